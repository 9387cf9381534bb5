"""bootloader stage: BIOS (isolinux) and UEFI (Debian's signed shim and GRUB in a FAT image) boot files
for a hybrid ISO.

Script: scripts/bootloader.sh. The files come from Debian's packages in the builder image, so
the builder image's identity is part of the key; no network is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bootkiln.core.runner import Builder
from bootkiln.profile.schema import Profile
from bootkiln.stages.artifacts import uki_signed
from bootkiln.stages.base import Inputs, StageBase, StageContext, add_scripts, base_fingerprint, scripts_upload

SCRIPT = "bootloader.sh"


class BootloaderStage(StageBase):
    name = "bootloader"
    requires: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("isolinux.bin", "ldlinux.c32", "isohdpfx.bin", "efiboot.img",
                                "bootloader-packages.tsv")

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
        return add_scripts(fingerprint, SCRIPT).hexdigest()

    def build(self, ctx: StageContext, inputs: Inputs, scratch: Path) -> dict[str, Any]:
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
        packages = dict(line.split("\t") for line in (scratch / "bootloader-packages.tsv").read_text().splitlines())
        return {"packages": packages}
