"""The `[aws]` profile table: where and how images are published and instances launched.

Credentials never live here: they come from boto3's standard chain (environment, shared files,
SSO, instance role). The region comes from here or from that chain; AWS_ENDPOINT_URL points every
client at another endpoint (moto, in the tests).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from bootkiln.profile.model import StrictModel

AccountId = Annotated[str, Field(pattern=r"^[0-9]{12}$")]
Region = Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")]
# AMI names allow 3-128 of these characters; "-v<version>" is appended, so leave room for it.
AmiName = Annotated[str, Field(pattern=r"^[A-Za-z0-9()\[\]./'@_ -]{3,110}$")]
ARCHITECTURES = {"amd64": "x86_64", "arm64": "arm64"}


class AwsSettings(StrictModel):
    region: Region | None = Field(default=None, description="default: AWS_REGION / AWS_DEFAULT_REGION / config")
    ami_name: AmiName | None = Field(default=None, description="default: bootkiln-<profile name>")
    description: str | None = Field(default=None, max_length=200)
    architecture: Literal["x86_64", "arm64"] | None = Field(default=None,
                                                            description="default: from debian.architecture")
    boot_mode: Literal["legacy-bios", "uefi", "uefi-preferred"] = "uefi-preferred"
    ena: bool = True
    root_device: Annotated[str, Field(pattern=r"^/dev/[a-z0-9]+$")] = "/dev/xvda"
    volume_size: int | None = Field(default=None, ge=1, le=65536, description="GiB; default: the image rounded up")
    volume_type: Literal["gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"] = "gp3"
    encrypted: bool = False
    kms_key_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:kms:")
    workers: int = Field(default=8, ge=1, le=64, description="parallel PutSnapshotBlock calls")
    retention: int | None = Field(default=None, ge=1, description="keep this many newest versions; none: keep all")
    share_accounts: list[AccountId] = Field(default_factory=list)
    copy_regions: list[Region] = Field(default_factory=list)
    s3_bucket: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    s3_prefix: str = Field(default="bootkiln/", pattern=r"^([A-Za-z0-9!_.*'()-]+/)*$")
    instance_type: Annotated[str, Field(pattern=r"^[a-z0-9-]+\.[a-z0-9]+$")] = "t3.small"
    subnet_id: str | None = Field(default=None, pattern=r"^subnet-[0-9a-f]+$")
    security_group_ids: list[Annotated[str, Field(pattern=r"^sg-[0-9a-f]+$")]] = Field(default_factory=list)
    key_name: str | None = None
    route53_zone_id: str | None = Field(default=None, pattern=r"^(/hostedzone/)?[A-Z0-9]+$")
    record_ttl: int = Field(default=300, ge=0, le=2147483647)
    record_address: Literal["private", "public"] = "private"

    @model_validator(mode="after")
    def _kms_key_means_encrypted(self) -> AwsSettings:
        if self.kms_key_arn and not self.encrypted:
            raise ValueError("kms_key_arn is set but encrypted is false; set encrypted = true to use the key")
        return self

    @field_validator("copy_regions", "share_accounts")
    @classmethod
    def _no_duplicates(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"lists each entry once, got {value!r}")
        return value
