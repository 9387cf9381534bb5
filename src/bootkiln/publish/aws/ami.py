"""AMIs from uploaded snapshots: versions, registration, sharing, copies to other regions, retention.

An AMI family is every image tagged `bootkiln:name=<ami_name>`; its members are named
`<ami_name>-v<N>`. Publishing a build whose manifest sha256 is already in the family changes
nothing (and finishes any sharing or copying a previous run left undone); a new build becomes
version N+1. With `aws.retention`, versions beyond the newest N are deregistered and their
snapshots deleted, in every region the family lives in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootkiln.errors import EnvironmentProblem, InputError
from bootkiln.profile.aws import ARCHITECTURES, AwsSettings
from bootkiln.publish.aws.ebs_upload import (
    ProgressSink,
    SnapshotRequest,
    SnapshotUploader,
    UploadStats,
    discard_snapshot,
)
from bootkiln.publish.aws.retry import RetryPolicy
from bootkiln.publish.aws.session import AwsContext, aws_failure, translated

TAG_NAME = "bootkiln:name"
TAG_VERSION = "bootkiln:version"
TAG_MANIFEST = "bootkiln:manifest-sha256"
TAG_SNAPSHOT = "bootkiln:snapshot-id"
TAG_PROFILE = "bootkiln:profile"


@dataclass(frozen=True)
class ImageSpec:
    """What an AMI of this profile looks like, resolved from the profile's [aws] table."""

    family: str
    description: str
    architecture: str
    boot_mode: str
    ena: bool
    root_device: str
    volume_type: str
    volume_size: int | None
    encrypted: bool
    kms_key_arn: str | None
    workers: int
    retention: int | None
    share_accounts: tuple[str, ...]
    copy_regions: tuple[str, ...]
    profile: str
    tpm: bool = False
    # EC2's UefiData (a base64 UEFI variable store): Secure Boot keys, set by the publishing target.
    uefi_data: str | None = None

    @classmethod
    def from_settings(cls, settings: AwsSettings, *, profile: str, debian_architecture: str,
                      profile_description: str, where: str) -> ImageSpec:
        native = ARCHITECTURES.get(debian_architecture)
        if native is None:
            raise InputError(f"{where}: key 'debian.architecture': EC2 does not run {debian_architecture} images",
                             hint="EC2 runs amd64 (x86_64) and arm64 images")
        if settings.architecture not in (None, native):
            raise InputError(f"{where}: key 'aws.architecture' is {settings.architecture}, but the image is "
                             f"{debian_architecture} ({native})",
                             hint="leave aws.architecture unset to follow debian.architecture")
        architecture = native
        if architecture == "arm64" and settings.boot_mode == "legacy-bios":
            raise InputError(f"{where}: key 'aws.boot_mode': arm64 instances boot UEFI only",
                             hint="set aws.boot_mode = 'uefi'")
        # Graviton instances boot UEFI only: the default (uefi-preferred) means uefi there.
        boot_mode = "uefi" if architecture == "arm64" else settings.boot_mode
        return cls(family=settings.ami_name or f"bootkiln-{profile}",
                   description=settings.description or f"bootkiln {profile}: {profile_description}"[:200],
                   architecture=architecture, boot_mode=boot_mode, ena=settings.ena,
                   root_device=settings.root_device, volume_type=settings.volume_type,
                   volume_size=settings.volume_size, encrypted=settings.encrypted, kms_key_arn=settings.kms_key_arn,
                   workers=settings.workers, retention=settings.retention,
                   share_accounts=tuple(settings.share_accounts), copy_regions=tuple(settings.copy_regions),
                   profile=profile, tpm=settings.tpm)


@dataclass(frozen=True)
class FamilyImage:
    image_id: str
    name: str
    version: int
    manifest: str
    state: str
    snapshots: tuple[str, ...]
    uploaded: str | None  # the snapshot bootkiln wrote, as tagged


    @classmethod
    def from_description(cls, image: dict[str, Any]) -> FamilyImage:
        tags = {tag["Key"]: tag["Value"] for tag in image.get("Tags", [])}
        snapshots = {m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", [])
                     if m.get("Ebs", {}).get("SnapshotId")}
        # The tag names the snapshot bootkiln uploaded, whatever the mapping reports.
        if tags.get(TAG_SNAPSHOT):
            snapshots.add(tags[TAG_SNAPSHOT])
        version = tags.get(TAG_VERSION, "0")
        return cls(image["ImageId"], image.get("Name", ""), int(version) if version.isdigit() else 0,
                   tags.get(TAG_MANIFEST, ""), image.get("State", ""), tuple(sorted(snapshots)),
                   tags.get(TAG_SNAPSHOT))


@dataclass
class Published:
    image_id: str
    name: str
    version: int
    region: str
    snapshot_id: str | None
    reused: bool
    upload: UploadStats | None = None
    copies: dict[str, str] = field(default_factory=dict)
    shared_with: tuple[str, ...] = ()
    retired: list[str] = field(default_factory=list)


def family_images(ec2: Any, family: str) -> list[FamilyImage]:
    with translated(f"listing the AMIs of {family}"):
        images = ec2.describe_images(Owners=["self"], Filters=[{"Name": f"tag:{TAG_NAME}", "Values": [family]}])
    found = [FamilyImage.from_description(image) for image in images["Images"]]
    return sorted((image for image in found if image.state not in ("deregistered", "failed")),
                  key=lambda image: image.version)


def images_named(ec2: Any, name: str) -> list[dict[str, Any]]:
    with translated(f"looking up AMI name {name}"):
        images: list[dict[str, Any]] = ec2.describe_images(
            Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])["Images"]
    return images


def _tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


class Publisher:
    def __init__(self, ctx: AwsContext, *, info: Callable[[str], None], warn: Callable[[str], None],
                 progress: ProgressSink | None = None, policy: RetryPolicy | None = None, wait_delay: float = 15.0,
                 wait_timeout: float = 3600.0) -> None:
        self.ctx = ctx
        self.info = info
        self.warn = warn
        self.progress = progress
        self.policy = policy or RetryPolicy()
        self.wait_delay = wait_delay
        self.wait_timeout = wait_timeout

    def publish(self, spec: ImageSpec, image: Path, manifest_sha256: str) -> Published:
        if self.ctx.region in spec.copy_regions:
            raise InputError(f"aws.copy_regions lists {self.ctx.region}, the region the AMI is published in",
                             hint="list only other regions")
        ec2 = self.ctx.client("ec2")
        family = family_images(ec2, spec.family)
        same = next((member for member in family if member.manifest == manifest_sha256), None)
        if same is not None:
            self.info(f"this build (manifest {manifest_sha256[:12]}) is already {same.name} ({same.image_id}); "
                      "nothing uploaded")
            result = Published(same.image_id, same.name, same.version, self.ctx.region, same.uploaded, reused=True)
        else:
            version = max((member.version for member in family), default=0) + 1
            name = f"{spec.family}-v{version}"
            self._refuse_collision(ec2, name, self.ctx.region)
            result = self._upload_and_register(ec2, spec, image, manifest_sha256, name, version)
        self._share(ec2, result.image_id, spec.share_accounts)
        result.shared_with = spec.share_accounts
        for region in spec.copy_regions:
            result.copies[region] = self._copy(spec, result, manifest_sha256, region)
        if spec.retention is not None:
            for region in (self.ctx.region, *spec.copy_regions):
                result.retired += self._retire(self.ctx.client("ec2", region), spec.family, spec.retention, region)
        return result

    def _refuse_collision(self, ec2: Any, name: str, region: str) -> None:
        clash = images_named(ec2, name)
        if clash:
            raise InputError(f"an AMI named {name!r} already exists in {region} ({clash[0]['ImageId']}) and is not "
                             "one of bootkiln's versions of this family, so the next version cannot take its name",
                             hint="set aws.ami_name to another family name, or deregister that AMI "
                                  f"(aws ec2 deregister-image --region {region} --image-id {clash[0]['ImageId']})")

    def _upload_and_register(self, ec2: Any, spec: ImageSpec, image: Path, manifest: str, name: str,
                             version: int) -> Published:
        tags = {"Name": name, TAG_NAME: spec.family, TAG_VERSION: str(version), TAG_MANIFEST: manifest,
                TAG_PROFILE: spec.profile}
        ebs = self.ctx.client("ebs", attempts=1, pool=spec.workers + 4)  # bootkiln retries EBS calls itself
        uploader = SnapshotUploader(ebs, ec2, workers=spec.workers, policy=self.policy, progress=self.progress,
                                    warn=self.warn, wait_delay=min(self.wait_delay, 5.0),
                                    wait_timeout=self.wait_timeout)
        self.info(f"uploading {image} to a new EBS snapshot for {name} ({spec.workers} workers)")
        upload = uploader.upload(image, SnapshotRequest(
            description=f"{name}: {spec.description}"[:255], tags=tags, volume_size=spec.volume_size,
            encrypted=spec.encrypted, kms_key_arn=spec.kms_key_arn))
        self.info(f"snapshot {upload.snapshot_id} completed: {upload.stats.summary()}")
        try:
            image_id = self._register(ec2, spec, name, upload.snapshot_id, upload.volume_size, tags)
        except BaseException as exc:
            _, note = discard_snapshot(ec2, upload.snapshot_id)
            failure = aws_failure(exc, f"registering AMI {name}") if isinstance(exc, Exception) else None
            if failure is None:
                self.warn(note)
                raise
            raise type(failure)(f"{failure.message}; {note}", failure.hint) from exc
        self._wait_available(ec2, image_id, name)
        self.info(f"registered {name} as {image_id} in {self.ctx.region}")
        return Published(image_id, name, version, self.ctx.region, upload.snapshot_id, reused=False,
                         upload=upload.stats)

    def _register(self, ec2: Any, spec: ImageSpec, name: str, snapshot_id: str, volume_size: int,
                  tags: dict[str, str]) -> str:
        image_tags = {**tags, TAG_SNAPSHOT: snapshot_id}
        uefi = {**({"UefiData": spec.uefi_data} if spec.uefi_data else {}),
                **({"TpmSupport": "v2.0"} if spec.tpm else {})}
        response = ec2.register_image(
            Name=name, Description=spec.description, Architecture=spec.architecture,
            VirtualizationType="hvm", RootDeviceName=spec.root_device, EnaSupport=spec.ena,
            BootMode=spec.boot_mode, ImdsSupport="v2.0", **uefi,
            BlockDeviceMappings=[{"DeviceName": spec.root_device, "Ebs": {
                "SnapshotId": snapshot_id, "VolumeSize": volume_size, "VolumeType": spec.volume_type,
                "DeleteOnTermination": True}}],
            # Tagged as it is made: there is no moment when the AMI exists but its family cannot find it.
            TagSpecifications=[{"ResourceType": "image", "Tags": _tags(image_tags)}])
        image_id = str(response["ImageId"])
        # A no-op on AWS; it covers emulators (moto) that drop TagSpecifications.
        ec2.create_tags(Resources=[image_id], Tags=_tags(image_tags))
        return image_id

    def _wait_available(self, ec2: Any, image_id: str, name: str) -> None:
        attempts = max(1, math.ceil(self.wait_timeout / self.wait_delay))
        with translated(f"waiting for AMI {name} ({image_id}) to become available",
                        hint=f"check it with: aws ec2 describe-images --image-ids {image_id}"):
            ec2.get_waiter("image_available").wait(ImageIds=[image_id],
                                                   WaiterConfig={"Delay": self.wait_delay, "MaxAttempts": attempts})

    def _share(self, ec2: Any, image_id: str, accounts: Sequence[str]) -> None:
        if not accounts:
            return
        with translated(f"sharing {image_id} with {', '.join(accounts)}"):
            ec2.modify_image_attribute(ImageId=image_id,
                                       LaunchPermission={"Add": [{"UserId": account} for account in accounts]})
        self.info(f"{image_id}: launch permission for {', '.join(accounts)}")

    def _copy(self, spec: ImageSpec, source: Published, manifest: str, region: str) -> str:
        """The same version in another region (reused if a previous run made it); shared like the source."""
        ec2 = self.ctx.client("ec2", region)
        existing = next((member for member in family_images(ec2, spec.family) if member.manifest == manifest), None)
        if existing is not None:
            image_id = existing.image_id
        else:
            self._refuse_collision(ec2, source.name, region)
            tags = {"Name": source.name, TAG_NAME: spec.family, TAG_VERSION: str(source.version),
                    TAG_MANIFEST: manifest, TAG_PROFILE: spec.profile}
            params: dict[str, Any] = {"Name": source.name, "SourceImageId": source.image_id,
                                      "SourceRegion": self.ctx.region, "Description": spec.description,
                                      "TagSpecifications": [{"ResourceType": "image", "Tags": _tags(tags)}]}
            if spec.encrypted:
                params["Encrypted"] = True
            with translated(f"copying {source.image_id} to {region}"):
                image_id = str(ec2.copy_image(**params)["ImageId"])
                ec2.create_tags(Resources=[image_id], Tags=_tags(tags))
            self._wait_available(ec2, image_id, f"{source.name} in {region}")
            self.info(f"copied {source.name} to {region} as {image_id}")
        self._share(ec2, image_id, spec.share_accounts)
        return image_id

    def _retire(self, ec2: Any, family: str, keep: int, region: str) -> list[str]:
        """Deregister all but the newest `keep` versions and delete their snapshots."""
        members = family_images(ec2, family)
        retired: list[str] = []
        for member in members[:-keep] if len(members) > keep else []:
            with translated(f"retiring {member.name} ({member.image_id}) in {region}"):
                ec2.deregister_image(ImageId=member.image_id)
                for snapshot in member.snapshots:
                    try:
                        ec2.delete_snapshot(SnapshotId=snapshot)
                    except Exception as exc:
                        raise EnvironmentProblem(
                            f"deregistered {member.name} ({member.image_id}) in {region}, but its snapshot "
                            f"{snapshot} could not be deleted: {exc}",
                            hint=f"aws ec2 delete-snapshot --region {region} --snapshot-id {snapshot}") from exc
            retired.append(f"{member.name} ({member.image_id}, {region}; snapshots {', '.join(member.snapshots)})")
            self.info(f"retired {member.name} ({member.image_id}) in {region}")
        return retired
