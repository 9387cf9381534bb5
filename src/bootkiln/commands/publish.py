"""What the AWS tasks do, as plain functions returning exit codes: tasks.py calls each in one line.

Everything that can be checked locally (the profile, the files, the user-data budget, the region and
credentials) is checked before the first request is sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bootkiln.commands.guard import guarded
from bootkiln.commands.installer import make_userdata, userdata_path, write_private
from bootkiln.console import Reporter
from bootkiln.errors import InputError
from bootkiln.paths import Workspace, read_user_file
from bootkiln.profile.loader import load_profile
from bootkiln.profile.schema import Profile


def _where(profile: Profile) -> str:
    return str(profile.source or "built-in default profile")


def _out(profile: Profile) -> Path:
    return Workspace.default().output_dir(profile.name)


def _existing_file(path: Path, what: str, build_task: str, flag: str) -> Path:
    if not path.is_file():
        raise InputError(f"no {what} at {path}", hint=f"build it first (invoke {build_task}), or pass {flag} PATH")
    return path


def publish_ami(profile_ref: str | None, image: str | None = None, manifest: str | None = None, *,
                session: Any = None, wait_delay: float = 15.0) -> int:
    """Upload the disk image as an EBS snapshot, register it as the next AMI version, share, copy, retire."""

    def action(reporter: Reporter) -> None:
        from bootkiln.publish.aws.ami import ImageSpec, Publisher
        from bootkiln.publish.aws.ebs_upload import RichProgress
        from bootkiln.publish.aws.manifest import read_manifest
        from bootkiln.publish.aws.session import connect

        profile = load_profile(profile_ref)
        spec = ImageSpec.from_settings(profile.aws, profile=profile.name, where=_where(profile),
                                       debian_architecture=profile.debian.architecture,
                                       profile_description=profile.description)
        out = _out(profile)
        image_path = _existing_file(Path(image) if image else out / "disk.img", "disk image", "build-disk", "--image")
        build = read_manifest(Path(manifest) if manifest else out / "manifest.json", build_task="build-disk")
        ctx = connect(profile.aws, session=session)
        with reporter.stage("publish-ami", f"{spec.family} in {ctx.region}") as stage:
            if build.check_artifact(image_path.name, image_path) is None:
                reporter.warn(f"{build.path} does not list {image_path.name}; its sha256 was not checked")
            publisher = Publisher(ctx, info=reporter.info, warn=reporter.warn, progress=RichProgress(reporter.console),
                                  wait_delay=wait_delay)
            result = publisher.publish(spec, image_path, build.sha256)
            stage.verb = "unchanged" if result.reused else "published"
            stage.note = result.image_id
        lines = [f"AMI {result.name}: {result.image_id} in {result.region}"
                 f"{' (already published)' if result.reused else ''}",
                 f"  snapshot {result.snapshot_id}", f"  manifest sha256 {build.sha256}"]
        lines += [f"  copy in {region}: {image_id}" for region, image_id in result.copies.items()]
        if result.shared_with:
            lines.append(f"  launch permission: {', '.join(result.shared_with)}")
        lines += [f"  retired {entry}" for entry in result.retired]
        reporter.info("\n".join(lines))

    return guarded(action)


def upload_iso(profile_ref: str | None, iso: str | None = None, manifest: str | None = None, *,
               session: Any = None, part_size: int = 16 << 20) -> int:
    """Upload the ISO (multipart, SHA-256 per part) and its manifest to the profile's S3 bucket."""

    def action(reporter: Reporter) -> None:
        from bootkiln.hashing import sha256_file
        from bootkiln.publish.aws.ebs_upload import RichProgress
        from bootkiln.publish.aws.manifest import read_manifest
        from bootkiln.publish.aws.s3_upload import IsoUploader, S3Target
        from bootkiln.publish.aws.session import connect

        profile = load_profile(profile_ref)
        bucket = profile.aws.s3_bucket
        if bucket is None:
            raise InputError(f"{_where(profile)}: key 'aws.s3_bucket' is not set",
                             hint="name the bucket the ISO goes to in the profile's [aws] table")
        out = _out(profile)
        iso_path = _existing_file(Path(iso) if iso else out / "boot.iso", "ISO", "build-iso", "--iso")
        build = read_manifest(Path(manifest) if manifest else out / "manifest.json", build_task="build-iso")
        ctx = connect(profile.aws, session=session)
        with reporter.stage("upload-iso", f"s3://{bucket}/{profile.aws.s3_prefix}") as stage:
            digest = build.check_artifact(iso_path.name, iso_path)
            if digest is None:
                reporter.warn(f"{build.path} does not list {iso_path.name}; its sha256 was not checked")
                digest = sha256_file(iso_path)
            uploader = IsoUploader(ctx, workers=min(profile.aws.workers, 8), part_size=part_size,
                                   progress=RichProgress(reporter.console))
            target = S3Target(bucket, profile.aws.s3_prefix, profile.name, build.sha256)
            result = uploader.upload(iso_path, build.path, target, iso_sha256=digest, profile=profile.name)
            stage.verb = "unchanged" if result.reused else "uploaded"
        rate = result.size / result.seconds / (1 << 20) if result.seconds else 0.0
        reporter.info(f"ISO: {result.url}{' (already uploaded)' if result.reused else ''}\n"
                      f"  {result.size:,} bytes in {result.parts} parts, {rate:,.1f} MiB/s\n"
                      f"  sha256 {digest}; S3 SHA-256 checksum {result.checksum}\n"
                      f"  manifest s3://{result.bucket}/{result.manifest_key} (sha256 {build.sha256})")

    return guarded(action)


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
            raise InputError(f"{_where(profile)}: no hostname to launch",
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
        spec = ImageSpec.from_settings(profile.aws, profile=profile.name, where=_where(profile),
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
            raise InputError(f"{_where(profile)}: no hostname to tear down", hint="pass --hostname")
        ctx = connect(profile.aws, session=session)
        with reporter.stage("teardown", f"{name} in {ctx.region}") as stage:
            done = Launcher(ctx, profile.aws, info=reporter.info, wait_delay=wait_delay).teardown(hostname=name)
            stage.verb = "done"
        reporter.info("\n".join(done))

    return guarded(action)
