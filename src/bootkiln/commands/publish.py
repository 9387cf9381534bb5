"""What the AWS tasks do, as plain functions returning exit codes: tasks.py calls each in one line.

Everything that can be checked locally (the profile, the files, the user-data budget, the region and
credentials) is checked before the first request is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from bootkiln.commands.guard import guarded
from bootkiln.commands.installer import make_userdata, userdata_path, write_private
from bootkiln.console import Reporter
from bootkiln.errors import InputError
from bootkiln.paths import Workspace, read_user_file
from bootkiln.profile.loader import load_profile
from bootkiln.profile.schema import Profile
from bootkiln.publish.manifest import BuildManifest, read_manifest
from bootkiln.publish.target import PublishTarget


def _existing_file(path: Path, what: str, build_task: str, flag: str) -> Path:
    if not path.is_file():
        raise InputError(f"no {what} at {path}", hint=f"build it first (invoke {build_task}), or pass {flag} PATH")
    return path


def trusted_manifest(profile: Profile, path: Path, build_task: str, reporter: Reporter) -> BuildManifest:
    """The manifest to publish; with a signing key configured, only one a provenance signed by that key covers."""
    from bootkiln.attest.keys import configured_key_path, load_public_key
    from bootkiln.attest.verify import verify_manifest

    key_path = configured_key_path(profile.signing.key, profile.base_dir)
    if key_path is not None and path.is_file():
        verify_manifest(path, load_public_key(key_path))
    elif key_path is None:
        reporter.info(f"{path}: nothing is signed (no signing key configured); the manifest is trusted on its "
                      "plain sha256 seal")
    return read_manifest(path, build_task=build_task)


# What each artifact kind is called, its default file, the task that builds it and the flag that names another.
_ARTIFACTS: dict[Literal["image", "iso"], tuple[str, str, str, str]] = {
    "image": ("disk image", "disk.img", "build-disk", "--image"),
    "iso": ("ISO", "boot.iso", "build-iso", "--iso"),
}


def _publish(profile_ref: str | None, what: Literal["image", "iso"], artifact: str | None, manifest: str | None,
             make_target: Callable[[Profile], PublishTarget]) -> int:
    """Check the target's settings, the artifact and its manifest, then hand them to the target."""

    def action(reporter: Reporter) -> None:
        profile = load_profile(profile_ref)
        target = make_target(profile)
        target.check(what)
        description, default_name, build_task, flag = _ARTIFACTS[what]
        out = Workspace.default().output_dir(profile.name)
        path = _existing_file(Path(artifact) if artifact else out / default_name, description, build_task, flag)
        build = trusted_manifest(profile, Path(manifest) if manifest else out / "manifest.json", build_task,
                                 reporter)
        publish = target.publish_image if what == "image" else target.upload_iso
        reporter.info("\n".join(publish(path, build, reporter).lines))

    return guarded(action)


def publish_ami(profile_ref: str | None, image: str | None = None, manifest: str | None = None, *,
                session: Any = None, wait_delay: float = 15.0) -> int:
    """Upload the disk image as an EBS snapshot, register it as the next AMI version, share, copy, retire."""
    from bootkiln.publish.aws.target import AwsTarget

    return _publish(profile_ref, "image", image, manifest,
                    lambda profile: AwsTarget(profile, session=session, wait_delay=wait_delay))


def upload_iso(profile_ref: str | None, iso: str | None = None, manifest: str | None = None, *,
               session: Any = None, part_size: int = 16 << 20) -> int:
    """Upload the ISO (multipart, SHA-256 per part) and its manifest to the profile's S3 bucket."""
    from bootkiln.publish.aws.target import AwsTarget

    return _publish(profile_ref, "iso", iso, manifest,
                    lambda profile: AwsTarget(profile, session=session, part_size=part_size))


def launch(profile_ref: str | None, hostname: str | None = None, ami: str | None = None,
           userdata_file: str | None = None, *, session: Any = None, wait_delay: float = 15.0) -> int:
    """Run an instance of the profile's newest AMI (or --ami) with the host's user-data; add its DNS record."""

    def action(reporter: Reporter) -> None:
        from bootkiln.installer.userdata import decode
        from bootkiln.publish.aws.ami import ImageSpec
        from bootkiln.publish.aws.launch import Launcher, latest_image
        from bootkiln.publish.aws.session import connect

        profile = load_profile(profile_ref)
        name = hostname or profile.userdata.hostname
        if name is None:
            raise InputError(f"{profile.where}: no hostname to launch",
                             hint="pass --hostname, or set userdata.hostname in the profile")
        if userdata_file:
            blob = read_user_file(Path(userdata_file), "user-data",
                                  hint="pass --userdata PATH to a file `invoke userdata` wrote, or leave it out")
            document = decode(blob)
            if document.hostname != name:
                raise InputError(f"{userdata_file} is the user-data of {document.hostname}, not {name}",
                                 hint="pass the matching --hostname, or leave --userdata out to make it")
        else:
            document, encoded = make_userdata(profile, name, reporter)
            blob = encoded.blob
            write_private(userdata_path(profile, document.hostname), blob)
        spec = ImageSpec.from_settings(profile.aws, profile=profile.name, where=profile.where,
                                       debian_architecture=profile.debian.architecture,
                                       profile_description=profile.description)
        ctx = connect(profile.aws, session=session)
        with reporter.stage("launch", f"{document.hostname} in {ctx.region}") as stage:
            image_id = ami or latest_image(ctx, spec.family)
            launcher = Launcher(ctx, profile.aws, info=reporter.info, wait_delay=wait_delay)
            result = launcher.launch(hostname=document.hostname, image_id=image_id, userdata=blob,
                                     profile=profile.name)
            stage.verb = "launched"
            stage.note = result.instance_id
        reporter.info(f"{result.hostname}: instance {result.instance_id} from {result.image_id}, address "
                      f"{result.address}\n  DNS: {result.record or 'no aws.route53_zone_id, so no record'}\n"
                      f"  user-data: {len(blob):,} bytes; IMDSv2 required, hop limit 1")

    return guarded(action)


def teardown(profile_ref: str | None, hostname: str | None = None, *, session: Any = None,
             wait_delay: float = 15.0) -> int:
    """Delete the host's DNS record and terminate its instance."""

    def action(reporter: Reporter) -> None:
        from bootkiln.publish.aws.launch import Launcher
        from bootkiln.publish.aws.session import connect

        profile = load_profile(profile_ref)
        name = hostname or profile.userdata.hostname
        if name is None:
            raise InputError(f"{profile.where}: no hostname to tear down", hint="pass --hostname")
        ctx = connect(profile.aws, session=session)
        with reporter.stage("teardown", f"{name} in {ctx.region}") as stage:
            done = Launcher(ctx, profile.aws, info=reporter.info, wait_delay=wait_delay).teardown(hostname=name)
            stage.verb = "done"
        reporter.info("\n".join(done))

    return guarded(action)
