"""AWS as a publishing target: disk images become AMIs through the EBS direct APIs, ISOs go to S3."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from bootkiln.console import Reporter
from bootkiln.core.runner import Runner
from bootkiln.core.uefivars import aws_uefi_data, virt_fw_vars
from bootkiln.errors import InputError
from bootkiln.hashing import sha256_file
from bootkiln.profile.sbkeys import load_keys
from bootkiln.profile.schema import Profile
from bootkiln.publish.aws.ami import ImageSpec, Publisher
from bootkiln.publish.aws.ebs_upload import RichProgress
from bootkiln.publish.aws.s3_upload import IsoUploader, S3Target
from bootkiln.publish.aws.session import AwsContext, connect
from bootkiln.publish.manifest import BuildManifest
from bootkiln.publish.target import Published


class AwsTarget:
    name = "aws"

    def __init__(self, profile: Profile, *, session: Any = None, wait_delay: float = 15.0,
                 part_size: int = 16 << 20) -> None:
        self.profile = profile
        self.where = profile.where
        self.session = session
        self.wait_delay = wait_delay
        self.part_size = part_size

    def check(self, what: Literal["image", "iso"]) -> None:
        if what == "image":
            self.image_spec()
            if self.profile.aws.secure_boot:
                load_keys(self.profile)  # a wrong certificate exits 2 before anything is uploaded
                virt_fw_vars()
        else:
            self.bucket()

    def image_spec(self) -> ImageSpec:
        profile = self.profile
        return ImageSpec.from_settings(profile.aws, profile=profile.name, where=self.where,
                                       debian_architecture=profile.debian.architecture,
                                       profile_description=profile.description)

    def bucket(self) -> str:
        bucket = self.profile.aws.s3_bucket
        if bucket is None:
            raise InputError(f"{self.where}: key 'aws.s3_bucket' is not set",
                             hint="name the bucket the ISO goes to in the profile's [aws] table")
        return bucket

    def connect(self) -> AwsContext:
        return connect(self.profile.aws, session=self.session)

    def publish_image(self, image: Path, build: BuildManifest, reporter: Reporter) -> Published:
        spec = self.image_spec()
        if self.profile.aws.secure_boot:
            keys = load_keys(self.profile)
            spec = replace(spec, uefi_data=aws_uefi_data(Runner(reporter), keys.cert if keys else None))
        ctx = self.connect()
        with reporter.stage("publish-ami", f"{spec.family} in {ctx.region}") as stage:
            if build.check_artifact(image.name, image) is None:
                reporter.warn(f"{build.path} does not list {image.name}; its sha256 was not checked")
            publisher = Publisher(ctx, info=reporter.info, warn=reporter.warn, progress=RichProgress(reporter.console),
                                  wait_delay=self.wait_delay)
            result = publisher.publish(spec, image, build.sha256)
            stage.verb = "unchanged" if result.reused else "published"
            stage.note = result.image_id
        lines = [f"AMI {result.name}: {result.image_id} in {result.region}"
                 f"{' (already published)' if result.reused else ''}",
                 f"  snapshot {result.snapshot_id}", f"  manifest sha256 {build.sha256}"]
        lines += [f"  copy in {region}: {image_id}" for region, image_id in result.copies.items()]
        if result.shared_with:
            lines.append(f"  launch permission: {', '.join(result.shared_with)}")
        lines += [f"  retired {entry}" for entry in result.retired]
        return Published(result.image_id, result.reused, lines)

    def upload_iso(self, iso: Path, build: BuildManifest, reporter: Reporter) -> Published:
        profile = self.profile
        bucket = self.bucket()
        ctx = self.connect()
        with reporter.stage("upload-iso", f"s3://{bucket}/{profile.aws.s3_prefix}") as stage:
            digest = build.check_artifact(iso.name, iso)
            if digest is None:
                reporter.warn(f"{build.path} does not list {iso.name}; its sha256 was not checked")
                digest = sha256_file(iso)
            uploader = IsoUploader(ctx, workers=min(profile.aws.workers, 8), part_size=self.part_size,
                                   progress=RichProgress(reporter.console))
            records = build.record_files()
            if not records:
                reporter.warn(f"{build.path} names no SBOM or provenance (a build from before them): only the ISO "
                              "and the manifest are uploaded")
            target = S3Target(bucket, profile.aws.s3_prefix, profile.name, build.sha256)
            result = uploader.upload(iso, build.path, target, iso_sha256=digest, profile=profile.name,
                                     records=records)
            stage.verb = "unchanged" if result.reused else "uploaded"
        rate = result.size / result.seconds / (1 << 20) if result.seconds else 0.0
        lines = [f"ISO: {result.url}{' (already uploaded)' if result.reused else ''}",
                 f"  {result.size:,} bytes in {result.parts} parts, {rate:,.1f} MiB/s",
                 f"  sha256 {digest}; S3 SHA-256 checksum {result.checksum}",
                 f"  manifest s3://{result.bucket}/{result.manifest_key} (sha256 {build.sha256})"]
        lines += [f"  {key.rsplit('/', 1)[-1]}: s3://{result.bucket}/{key}" for key in result.record_keys]
        return Published(result.url, result.reused, lines)
