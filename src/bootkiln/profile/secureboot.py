"""The `[secureboot]` profile table: Debian's signed chain by default, or the user's own key (docs/secureboot.md)."""

from __future__ import annotations

from pydantic import Field, model_validator

from bootkiln.profile.model import StrictModel


class SecureBootSettings(StrictModel):
    """[secureboot]: UEFI Secure Boot on amd64 and arm64 (docs/secureboot.md). `secureboot = false` is short for
    `[secureboot] enabled = false`."""

    enabled: bool = Field(
        default=True,
        description="boot UEFI through Debian's signed shim and GRUB, so firmware with Microsoft's keys boots "
        "the image, and refuse a kernel without an Authenticode signature; false: an unsigned GRUB built by "
        "grub-mkimage (for an unsigned kernel, or a smaller ISO)",
    )
    key: str | None = Field(
        default=None,
        description="your own Secure Boot signing key (PEM, RSA), relative to the profile's folder: UEFI then boots "
        "a Unified Kernel Image (kernel, initramfs and command line) signed with it; needs `cert`. Never recorded in "
        "any output. amd64 only",
        json_schema_extra={"shown_default": "Debian's signed chain"},
    )
    cert: str | None = Field(
        default=None,
        description="the X.509 certificate (PEM) of `key`, relative to the profile's folder; enrol it in the "
        "firmware's db or as a MOK (docs/secureboot.md). Its SHA-256 fingerprint goes in the manifest",
        json_schema_extra={"shown_default": "none"},
    )

    @model_validator(mode="after")
    def _key_with_cert(self) -> SecureBootSettings:
        if (self.key is None) != (self.cert is None):
            raise ValueError("key and cert go together: give both, or neither")
        if self.key is not None and not self.enabled:
            raise ValueError("key and cert sign the Unified Kernel Image for Secure Boot; drop them, or enabled = true")
        return self

    @property
    def own_keys(self) -> bool:
        return self.key is not None
