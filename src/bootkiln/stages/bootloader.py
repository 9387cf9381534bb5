"""bootloader stage: the target's boot files: for the ISO, BIOS (isolinux, amd64 only) and UEFI in a
FAT image (Debian's signed shim and GRUB, an unsigned GRUB, or the profile's own signed UKI); for the
disk stage, the target's GRUB modules and Debian's signed binaries (grub-modules.tar).

Script: scripts/bootloader.sh. Every boot file comes from the TARGET's packages, downloaded from the
profile's archive (grub-efi-ARCH-bin; isolinux, syslinux-common and grub-pc-bin on amd64; with
Secure Boot shim-signed, shim-helpers-ARCH-signed and grub-efi-ARCH-signed), never from the builder
image: an arm64 builder has no x86 boot loaders, and the builder's architecture must not change a
byte. The builder gives only the tools (grub-mkimage, mkfs.vfat, mtools). Signed binaries are
copied byte for byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bootkiln.core.archguard import require_efi_image
from bootkiln.formats.arch import ARCHES
from bootkiln.profile.schema import Profile
from bootkiln.stages.artifacts import GRUB_MODULES, ISO_MARKER, uki_signed
from bootkiln.stages.base import (
    Inputs,
    StageBase,
    StageContext,
    add_scripts,
    archive_env,
    base_fingerprint,
    fetch_then_make,
    scripts_upload,
)

SCRIPT = "bootloader.sh"
BIOS_FILES = ("isolinux.bin", "ldlinux.c32", "isohdpfx.bin")


class BootloaderStage(StageBase):
    name = "bootloader"
    requires: tuple[str, ...] = ()
    outputs: tuple[str, ...] = (*BIOS_FILES, "efiboot.img", GRUB_MODULES, "bootloader-packages.tsv")

    def outputs_for(self, profile: Profile) -> tuple[str, ...]:
        if ARCHES[profile.debian.architecture].bios:
            return self.outputs
        return tuple(name for name in self.outputs if name not in BIOS_FILES)

    def requires_for(self, profile: Profile) -> tuple[str, ...]:
        # With the profile's own key, UEFI boots its signed Unified Kernel Image instead of shim and GRUB.
        return ("ukisign",) if profile.secureboot.own_keys else ()

    def key(self, ctx: StageContext, inputs: Inputs) -> str:
        fingerprint = (
            base_fingerprint(self, inputs)
            .add_text("builder", ctx.builder.image_id)
            .add_text("epoch", str(ctx.archive.source_date_epoch))
            .add_json("secureboot", ctx.profile.secureboot.enabled)
            .add_text("arch", ctx.profile.debian.architecture)
            .add_text("marker", ISO_MARKER)
            .add_json("archive", ctx.archive.identity())
        )
        return add_scripts(fingerprint, SCRIPT).hexdigest()

    def build(self, ctx: StageContext, inputs: Inputs, scratch: Path) -> dict[str, Any]:
        target = ctx.profile.debian.architecture
        # With the profile's own key its UKI boots UEFI (BK_UKI): Debian's signed chain is not fetched.
        signed_chain = ctx.profile.secureboot.enabled and "ukisign" not in inputs
        env = {**archive_env(ctx), "BK_ISO_MARKER": ISO_MARKER, "BK_SECURE_BOOT": "1" if signed_chain else "0"}
        extra = {}
        if "ukisign" in inputs:
            extra["in/uki.efi"] = (inputs["ukisign"].artifact(uki_signed("iso")).read_bytes(), 0o644)
            env["BK_UKI"] = "/bootkiln/in/uki.efi"
        bios = ", isolinux, syslinux-common, grub-pc-bin" if ARCHES[target].bios else ""
        fetch_then_make(ctx, self.name, SCRIPT, scratch, env=env, uploads=[scripts_upload(ctx, SCRIPT, extra=extra)],
                        fetch=["fetch"], fetch_hint=f"could not download grub-efi-{target}-bin{bios} (or, with "
                        "Secure Boot, Debian's signed shim and GRUB) from the profile's archive; check the mirror",
                        make=[], make_hint=f"making the boot files for {target} failed; see the script's message above")
        efi_binaries = require_efi_image(scratch / "efiboot.img", target)
        rows = [line.split("\t") for line in (scratch / "bootloader-packages.tsv").read_text().splitlines()]
        return {"packages": {row[0]: row[1] for row in rows},
                "target_packages": {row[0]: {"version": row[1], "architecture": row[2], "sha256": row[3]}
                                    for row in rows if len(row) == 4},
                "efi_binaries": efi_binaries}
