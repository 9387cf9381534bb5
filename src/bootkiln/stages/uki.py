"""uki stage: unsigned Unified Kernel Images, for profiles that sign UEFI boot with their own key.

Script: scripts/uki.sh. systemd-boot-efi's stub with the kernel, the initramfs, a command line (one
image for the ISO, one for the disk image: the disk's names its root filesystem) and an os-release as
PE sections, made by objcopy in the builder container (bookworm has no ukify).
The same inputs give the same bytes; the ukisign stage signs a copy, so no key ever reaches this
stage or its cache entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bootkiln.core.runner import Builder
from bootkiln.profile.schema import Profile
from bootkiln.stages.artifacts import UKI_MEDIA, disk_kernel_cmdline, uki_unsigned
from bootkiln.stages.base import Inputs, StageBase, StageContext, add_scripts, base_fingerprint, scripts_upload

SCRIPT = "uki.sh"


def cmdlines(profile: Profile) -> dict[str, str]:
    """Each medium's kernel command line: the ISO's from [iso], the disk's as scripts/disk.sh makes it."""
    return {"iso": profile.iso.cmdline, "disk": disk_kernel_cmdline(profile)}


def os_release(profile: Profile) -> str:
    """The UKI's .osrel: what a boot menu shows for it (systemd-stub(7)); made from the profile alone."""
    return (f'NAME="bootkiln"\nID=bootkiln\nID_LIKE=debian\nVERSION_ID="{profile.debian.suite}"\n'
            f'PRETTY_NAME="bootkiln {profile.name} (Debian {profile.debian.suite})"\n')


class UkiStage(StageBase):
    name = "uki"
    requires: tuple[str, ...] = ("kernel", "initramfs")
    outputs: tuple[str, ...] = (*(uki_unsigned(medium) for medium in UKI_MEDIA), "uki-packages.tsv")

    def key(self, ctx: StageContext, inputs: Inputs) -> str:
        fingerprint = (
            base_fingerprint(self, inputs)
            .add_text("builder", ctx.builder.image_id)
            .add_text("epoch", str(ctx.archive.source_date_epoch))
            .add_json("cmdlines", cmdlines(ctx.profile))
            .add_text("os-release", os_release(ctx.profile))
        )
        return add_scripts(fingerprint, SCRIPT).hexdigest()

    def build(self, ctx: StageContext, inputs: Inputs, scratch: Path) -> dict[str, Any]:
        files = {
            "in/vmlinuz": (inputs["kernel"].artifact("vmlinuz").read_bytes(), 0o644),
            "in/initrd.img": (inputs["initramfs"].artifact("initrd.img").read_bytes(), 0o644),
            **{f"in/{medium}/cmdline.txt": (cmdline.encode(), 0o644)
               for medium, cmdline in cmdlines(ctx.profile).items()},
            "in/os-release": (os_release(ctx.profile).encode(), 0o644),
        }
        env = {"SOURCE_DATE_EPOCH": str(ctx.archive.source_date_epoch)}
        ctx.runner.run(["/bootkiln/" + SCRIPT], stage=self.name,
                       where=Builder(image=ctx.builder.tag, network="none", env=env,
                                     uploads=[scripts_upload(ctx, SCRIPT, extra=files)],
                                     collect=[("/work/out", scratch)]),
                       hint="making the Unified Kernel Image failed; the builder image may lack systemd-boot-efi")
        packages = dict(line.split("\t") for line in (scratch / "uki-packages.tsv").read_text().splitlines())
        return {"bytes": {medium: (scratch / uki_unsigned(medium)).stat().st_size for medium in UKI_MEDIA},
                "cmdlines": cmdlines(ctx.profile), "packages": packages}
