"""uki stage: unsigned Unified Kernel Images, for profiles that sign UEFI boot with their own key.

Script: scripts/uki.sh. The target's systemd-boot-efi stub, fetched from the profile's archive (not
the builder's own: an arm64 builder has only the arm64 stub), with the kernel, the initramfs, a
command line (one image for the ISO, one for the disk image: the disk's names its root filesystem)
and an os-release as PE sections, made by the target's objcopy in the builder (bookworm has no ukify).
The same inputs give the same bytes; the ukisign stage signs a copy, so no key ever reaches this
stage or its cache entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bootkiln.profile.schema import Profile
from bootkiln.stages.artifacts import UKI_MEDIA, disk_kernel_cmdline, uki_unsigned
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
            .add_text("arch", ctx.profile.debian.architecture)
            .add_json("archive", ctx.archive.identity())
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
        fetch_then_make(ctx, self.name, SCRIPT, scratch, env=archive_env(ctx),
                        uploads=[scripts_upload(ctx, SCRIPT, extra=files)], fetch=["fetch"],
                        fetch_hint="could not download systemd-boot-efi from the profile's archive; check the mirror",
                        make=[], make_hint="making the Unified Kernel Image failed; see the script's message above")
        packages = {row[0]: row[1] for row in
                    (line.split("\t") for line in (scratch / "uki-packages.tsv").read_text().splitlines())}
        return {"bytes": {medium: (scratch / uki_unsigned(medium)).stat().st_size for medium in UKI_MEDIA},
                "cmdlines": cmdlines(ctx.profile), "packages": packages}
