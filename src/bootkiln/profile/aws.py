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
    region: Region | None = Field(
        default=None,
        description=(
            "AWS region to publish and launch in; otherwise `AWS_REGION`, `AWS_DEFAULT_REGION` or the AWS "
            "config file (credentials always come from boto3's standard chain)"),
        json_schema_extra={"shown_default": "from the environment"},
    )
    ami_name: AmiName | None = Field(
        default=None,
        description="AMI family name; versions are registered as `<ami_name>-v1`, `-v2`, ...",
        json_schema_extra={"shown_default": "`bootkiln-<name>`"},
    )
    description: str | None = Field(
        default=None,
        max_length=200,
        description="AMI description",
        json_schema_extra={"shown_default": "from `description`"},
    )
    architecture: Literal["x86_64", "arm64"] | None = Field(
        default=None,
        description="`x86_64` or `arm64`; must match the image",
        json_schema_extra={"shown_default": "from `debian.architecture`"},
    )
    boot_mode: Literal["legacy-bios", "uefi", "uefi-preferred"] = Field(
        default="uefi-preferred",
        description="`legacy-bios`, `uefi` or `uefi-preferred` (arm64: `uefi`)",
    )
    secure_boot: bool = Field(
        default=False,
        description="register the AMI with UEFI Secure Boot on: its UefiData enrols Microsoft's UEFI CAs (Debian's "
        "shim) and the profile's [secureboot] cert, if any, in db (needs boot_mode = `uefi`)",
    )
    tpm: bool = Field(
        default=False,
        description="give instances a virtual TPM 2.0 (TpmSupport = v2.0; needs boot_mode = `uefi`)",
    )
    ena: bool = Field(
        default=True,
        description="register the AMI with ENA support",
    )
    root_device: Annotated[str, Field(pattern=r"^/dev/[a-z0-9]+$")] = Field(
        default="/dev/xvda",
        description="root device name of the AMI",
    )
    volume_size: int | None = Field(
        default=None,
        ge=1,
        le=65536,
        description="root volume size in GiB",
        json_schema_extra={"shown_default": "the image, rounded up"},
    )
    volume_type: Literal["gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"] = Field(
        default="gp3",
        description="root volume type",
    )
    encrypted: bool = Field(
        default=False,
        description="make the snapshot encrypted (with `aws.kms_key_arn`, or the account's default key)",
    )
    kms_key_arn: str | None = Field(
        default=None,
        pattern=r"^arn:aws[a-z-]*:kms:",
        description="KMS key for an encrypted snapshot",
    )
    workers: int = Field(
        default=8,
        ge=1,
        le=64,
        description="parallel block uploads (1-64); at most 2 blocks of 512 KiB per worker are in memory",
    )
    retention: int | None = Field(
        default=None,
        ge=1,
        description="keep this many newest AMI versions; older ones are deregistered and their snapshots deleted",
        json_schema_extra={"shown_default": "none (keep all)"},
    )
    share_accounts: list[AccountId] = Field(
        default_factory=list,
        description="12-digit account IDs given launch permission",
    )
    copy_regions: list[Region] = Field(
        default_factory=list,
        description="other regions the AMI is copied to",
    )
    s3_bucket: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="bucket for `invoke upload-iso`",
    )
    s3_prefix: str = Field(
        default="bootkiln/",
        pattern=r"^([A-Za-z0-9!_.*'()-]+/)*$",
        description="key prefix in that bucket (objects go to `<prefix><name>/<manifest sha256[:16]>/`)",
    )
    instance_type: Annotated[str, Field(pattern=r"^[a-z0-9-]+\.[a-z0-9]+$")] = Field(
        default="t3.small",
        description="instance type for `invoke launch`",
    )
    subnet_id: str | None = Field(
        default=None,
        pattern=r"^subnet-[0-9a-f]+$",
        description="subnet for `invoke launch`",
        json_schema_extra={"shown_default": "none (default VPC)"},
    )
    security_group_ids: list[Annotated[str, Field(pattern=r"^sg-[0-9a-f]+$")]] = Field(
        default_factory=list,
        description="security groups for `invoke launch`",
    )
    key_name: str | None = Field(
        default=None,
        description="EC2 key pair for `invoke launch`",
    )
    route53_zone_id: str | None = Field(
        default=None,
        pattern=r"^(/hostedzone/)?[A-Z0-9]+$",
        description="hosted zone that gets an A record for the launched host (none: no record)",
    )
    record_ttl: int = Field(
        default=300,
        ge=0,
        le=2147483647,
        description="TTL of that record",
    )
    record_address: Literal["private", "public"] = Field(
        default="private",
        description="which address the record points at: `private` or `public`",
    )

    @model_validator(mode="after")
    def _uefi_features_need_uefi(self) -> AwsSettings:
        # EC2 refuses UefiData and TpmSupport on an AMI that may boot legacy BIOS.
        wanted = [name for name in ("secure_boot", "tpm") if getattr(self, name)]
        if wanted and self.boot_mode != "uefi":
            raise ValueError(f"{' and '.join(wanted)} need boot_mode = 'uefi', not {self.boot_mode!r}")
        return self

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
