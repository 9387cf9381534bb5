"""bootloader stage: BIOS (isolinux) and UEFI boot files for the target's ISO: on amd64 Debian's signed
shim and GRUB (or the profile's own signed UKI) in a FAT image; on arm64 Debian's signed arm64 shim
and GRUB, or (secureboot = false) GRUB arm64-efi.

Script: scripts/bootloader.sh. For amd64 the files come from Debian's packages in the builder image,
so the builder image's identity is part of the key and no network is needed. arm64 boots UEFI only;
its GRUB modules come from the profile's archive (grub-efi-arm64-bin), and the builder's grub-mkimage
makes BOOTAA64.EFI from them; with Secure Boot, so do shim-signed, shim-helpers-arm64-signed and
grub-efi-arm64-signed, whose signed binaries are copied byte for byte.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from bootkiln.core.archguard import require_efi_image
from bootkiln.core.runner import Builder
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
    scripts_upload,
)

SCRIPT = "bootloader.sh"
BIOS_FILES = ("isolinux.bin", "ldlinux.c32", "isohdpfx.bin")


class BootloaderStage(StageBase):
    name = "bootloader"
    requires: tuple[str, ...] = ()
    outputs: tuple[str, ...] = (*BIOS_FILES, "efiboot.img", "bootloader-packages.tsv")

    def outputs_for(self, profile: Profile) -> tuple[str, ...]:
        if ARCHES[profile.debian.architecture].bios:
            return self.outputs
        return (*(name for name in self.outputs if name not in BIOS_FILES), GRUB_MODULES)

    def requires_for(self, profile: Profile) -> tuple[str, ...]:
        # With the profile's own key, UEFI boots its signed Unified Kernel Image instead of shim and GRUB.
        return ("ukisign",) if profile.secureboot.own_keys else ()

    def key(self, ctx: StageContext, inputs: Inputs) -> str:
        fingerprint = (
            base_fingerprint(self, inputs)
            .add_text("builder", ctx.builder.image_id)
            .add_text("epoch", str(ctx.archive.source_date_epoch))
            .add_json("secureboot", ctx.profile.secureboot.enabled)
        )
        if self._foreign_grub(ctx):
            # The target's GRUB modules come from the profile's archive; its config searches the marker.
            fingerprint.add_text("arch", ctx.profile.debian.architecture)
            fingerprint.add_text("marker", ISO_MARKER)
            fingerprint.add_json("archive", ctx.archive.identity())
        return add_scripts(fingerprint, SCRIPT).hexdigest()

    @staticmethod
    def _foreign_grub(ctx: StageContext) -> bool:
        return ctx.profile.debian.architecture != "amd64"

    def build(self, ctx: StageContext, inputs: Inputs, scratch: Path) -> dict[str, Any]:
        target = ctx.profile.debian.architecture
        if not self._foreign_grub(ctx):
            env = {"SOURCE_DATE_EPOCH": str(ctx.archive.source_date_epoch),
                   "BK_SECURE_BOOT": "1" if ctx.profile.secureboot.enabled else "0"}
            extra = {}
            if "ukisign" in inputs:
                extra["in/uki.efi"] = (inputs["ukisign"].artifact(uki_signed("iso")).read_bytes(), 0o644)
                env["BK_UKI"] = "/bootkiln/in/uki.efi"
            ctx.runner.run(["/bootkiln/" + SCRIPT], stage=self.name,
                           where=Builder(image=ctx.builder.tag, network="none", env=env,
                                         uploads=[scripts_upload(ctx, SCRIPT, extra=extra)],
                                         collect=[("/work/out", scratch)]),
                           hint="making the boot files failed; the builder image may lack isolinux, shim-signed or "
                           "grub-efi-amd64-signed")
        else:
            engine = ctx.runner.engine
            assert engine is not None
            env = {**archive_env(ctx), "BK_ISO_MARKER": ISO_MARKER,
                   "BK_SECURE_BOOT": "1" if ctx.profile.secureboot.enabled else "0"}
            hint = f"making the boot files failed; the builder image may lack GRUB for {target}"
            with engine.volume(self.name) as volume:
                online = Builder(image=ctx.builder.tag, network="host", volumes={volume: "/work"}, env=env,
                                 uploads=[scripts_upload(ctx, SCRIPT)])
                ctx.runner.run(["/bootkiln/" + SCRIPT, "fetch"], stage=self.name, where=online,
                               hint=f"could not download grub-efi-{target}-bin (or, with Secure Boot, Debian's "
                               "signed shim and GRUB); check the mirror")
                ctx.runner.run(["/bootkiln/" + SCRIPT], stage=self.name,
                               where=replace(online, network="none", collect=[("/work/out", scratch)]), hint=hint)
        efi_binaries = require_efi_image(scratch / "efiboot.img", target)
        packages = dict(line.split("\t") for line in (scratch / "bootloader-packages.tsv").read_text().splitlines())
        return {"packages": packages, "efi_binaries": efi_binaries}
