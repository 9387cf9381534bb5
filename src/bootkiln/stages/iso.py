"""iso stage: the hybrid BIOS/UEFI ISO, written on the host with pycdlib (bootkiln.formats.iso).

It consumes the kernel, the initramfs and the boot files; the label and kernel command line
come from the profile's [iso] table.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

from bootkiln.console import mib
from bootkiln.core.archguard import require_kernel_image
from bootkiln.errors import InputError
from bootkiln.formats.arch import ARCHES
from bootkiln.formats.efiiso import write_efi_iso
from bootkiln.formats.iso import BootFiles, write_hybrid_iso
from bootkiln.profile.schema import IsoSettings, Profile, carries_payload
from bootkiln.stages.artifacts import ISO_MARKER, PAYLOAD_DIR, PAYLOAD_FILES
from bootkiln.stages.base import Inputs, StageBase, StageContext, base_fingerprint, code_files

ISO_NAME = "boot.iso"
LIVE_SQUASHFS = "/live/root.squashfs"


class IsoStage(StageBase):
    name = "iso"
    requires: tuple[str, ...] = ("kernel", "initramfs", "bootloader")
    outputs: tuple[str, ...] = (ISO_NAME,)

    def requires_for(self, profile: Profile) -> tuple[str, ...]:
        # The live variant carries its root filesystem on the ISO, an installer its offline payload.
        extra = ("nfsroot",) if profile.nfsroot.root == "iso" else ()
        return (*self.requires, *extra, *(("payload",) if carries_payload(profile) else ()))

    def key(self, ctx: StageContext, inputs: Inputs) -> str:
        fingerprint = (
            base_fingerprint(self, inputs)
            .add_json("iso", ctx.profile.iso.model_dump(mode="json"))
            .add_text("epoch", str(ctx.archive.source_date_epoch))
            .add_text("pycdlib", version("pycdlib"))
        )
        modules = ("formats.iso", "stages.iso") if ARCHES[ctx.profile.debian.architecture].bios else (
            "formats.iso", "formats.efiiso", "stages.iso")
        for path in code_files(*modules):
            fingerprint.add_file(path.name, path)
        return fingerprint.hexdigest()

    def build(self, ctx: StageContext, inputs: Inputs, scratch: Path) -> dict[str, Any]:
        settings = ctx.profile.iso
        boot = inputs["bootloader"]
        target = ctx.profile.debian.architecture
        require_kernel_image(inputs["kernel"].artifact("vmlinuz"), target)
        iso = scratch / ISO_NAME
        extra = [(LIVE_SQUASHFS, inputs["nfsroot"].artifact("root.squashfs"))] if "nfsroot" in inputs else []
        if "payload" in inputs:
            extra += [(f"/{PAYLOAD_DIR}/{name}", inputs["payload"].artifact(name)) for name in PAYLOAD_FILES]
        if not ARCHES[target].bios:
            write_efi_iso(iso, kernel=inputs["kernel"].artifact("vmlinuz"),
                          initrd=inputs["initramfs"].artifact("initrd.img"), efi_image=boot.artifact("efiboot.img"),
                          label=settings.label, cmdline=settings.cmdline, marker=ISO_MARKER,
                          source_date_epoch=ctx.archive.source_date_epoch, extra=extra)
            return self._checked_size(settings, iso, {"kernel": inputs["kernel"].artifact("vmlinuz"),
                                                      "initramfs": inputs["initramfs"].artifact("initrd.img")})
        files = BootFiles(
            kernel=inputs["kernel"].artifact("vmlinuz"), initrd=inputs["initramfs"].artifact("initrd.img"),
            isolinux_bin=boot.artifact("isolinux.bin"), ldlinux_c32=boot.artifact("ldlinux.c32"),
            isohdpfx=boot.artifact("isohdpfx.bin"), efi_image=boot.artifact("efiboot.img"),
        )
        write_hybrid_iso(iso, files, label=settings.label, cmdline=settings.cmdline, marker=ISO_MARKER,
                         source_date_epoch=ctx.archive.source_date_epoch, extra=extra)
        return self._checked_size(settings, iso, {"kernel": files.kernel, "initramfs": files.initrd,
                                                  "EFI image": files.efi_image})

    @staticmethod
    def _checked_size(settings: IsoSettings, iso: Path, shown: dict[str, Path]) -> dict[str, Any]:
        size = iso.stat().st_size
        if settings.max_size is not None and size > settings.max_size:
            parts = ", ".join(f"{name} {mib(path.stat().st_size)}" for name, path in shown.items())
            raise InputError(f"the ISO is {mib(size)}, over the profile's iso.max_size of {mib(settings.max_size)} "
                             f"({parts})", hint="drop kernel modules or applets, or raise iso.max_size")
        return {"bytes": size, "label": settings.label, "cmdline": settings.cmdline}
