"""disk stage: a raw, sparse GPT disk image that boots under BIOS and UEFI, made without loop
devices or mounts, so it works in any container.

Script: scripts/disk.sh. sfdisk writes the partition table on the image file; `mkfs.ext4 -d` makes
the root filesystem from the rootfs (plus the kernel and initramfs in /boot); mkfs.vfat and mtools
make the ESP; GRUB, from the target's modules and signed binaries the bootloader stage fetched,
boots both firmwares (core.img in a BIOS boot partition with boot.img patched as
grub-bios-setup would; in the ESP, Debian's signed shim and GRUB, so Secure Boot needs no setting).
Every GUID, UUID, hash seed and serial derives from the profile's `disk.seed` (its name by
default), so the same inputs give the same image.
"""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path
from typing import Any

from bootkiln.core.engine import Upload
from bootkiln.core.runner import Builder
from bootkiln.errors import InputError
from bootkiln.profile.schema import Profile, carries_payload, is_installer
from bootkiln.stages.artifacts import GRUB_MODULES, PAYLOAD_FILES, disk_seed, uki_signed
from bootkiln.stages.base import (
    Inputs,
    StageBase,
    StageContext,
    add_scripts,
    base_fingerprint,
    require_initramfs_stage,
    scripts_upload,
)

SCRIPT = "disk.sh"
UKI_INPUT = "uki.efi"
# What goes to the ESP and the boot code, not the third partition.
ESP_INPUTS = (GRUB_MODULES, UKI_INPUT)


class DiskStage(StageBase):
    name = "disk"
    requires: tuple[str, ...] = ("rootfs", "kernel", "initramfs")
    outputs: tuple[str, ...] = ("disk.img", "disk-ids.txt")

    def requires_for(self, profile: Profile) -> tuple[str, ...]:
        # With the profile's own Secure Boot key, UEFI boots its signed Unified Kernel Image.
        uki = ("ukisign",) if profile.secureboot.own_keys else ()
        # An installer's disk boots the installer: no rootfs, but its offline payload if it carries one.
        # The target's GRUB modules and signed binaries come from the bootloader stage, not the builder.
        if profile.disk.layout == "installer":
            return ("kernel", "initramfs", *(("payload",) if carries_payload(profile) else ()), "bootloader", *uki)
        return (*self.requires, "bootloader", *uki)

    def check(self, profile: Profile) -> None:
        require_initramfs_stage(profile, "disk.stage", profile.disk.stage)
        if profile.disk.layout == "installer" and not is_installer(profile):
            raise InputError(f"{profile.where}: key 'disk.layout': 'installer' needs "
                             f"initramfs.stage = \"installer\" (it is {profile.initramfs.stage!r})",
                             hint="use layout = \"root\" for a disk that boots its own root filesystem")

    def files(self, inputs: Inputs) -> list[tuple[str, Path]]:
        """What goes into the image, by its name under /bootkiln/in in the builder."""
        files = [("vmlinuz", inputs["kernel"].artifact("vmlinuz")),
                 ("initrd.img", inputs["initramfs"].artifact("initrd.img"))]
        if "rootfs" in inputs:
            files.append(("rootfs.tar", inputs["rootfs"].artifact("rootfs.tar")))
        if "payload" in inputs:
            files += [(f"payload/{name}", inputs["payload"].artifact(name)) for name in PAYLOAD_FILES]
        if "ukisign" in inputs:
            files.append((UKI_INPUT, inputs["ukisign"].artifact(uki_signed("disk"))))
        if "bootloader" in inputs:
            files.append((GRUB_MODULES, inputs["bootloader"].artifact(GRUB_MODULES)))
        return files

    def seed(self, ctx: StageContext) -> str:
        return disk_seed(ctx.profile)

    def key(self, ctx: StageContext, inputs: Inputs) -> str:
        fingerprint = (
            base_fingerprint(self, inputs)
            .add_json("disk", ctx.profile.disk.model_dump(mode="json"))
            .add_text("seed", self.seed(ctx))
            .add_text("builder", ctx.builder.image_id)
            .add_text("epoch", str(ctx.archive.source_date_epoch))
            .add_json("secureboot", ctx.profile.secureboot.enabled)
        )
        return add_scripts(fingerprint, SCRIPT).hexdigest()

    def check_room(self, ctx: StageContext, inputs: Inputs) -> None:
        """Fail with the figures before any work if the third partition cannot hold what goes in it."""
        disk = ctx.profile.disk
        root_room = int(disk.size) - int(disk.esp_size) - (4 << 20)  # alignment, BIOS boot, both GPTs
        # GRUB's modules and a UKI go to the ESP and the boot code, not to the third partition.
        payload = sum(path.stat().st_size for name, path in self.files(inputs) if name not in ESP_INPUTS)
        journal = 16 << 20 if root_room > (512 << 20) else 4 << 20  # mke2fs's default for the size
        needed = int(payload * 1.05) + (root_room >> 5) + journal  # inode tables and directories
        what = "the installer's files and payload" if disk.layout == "installer" else "rootfs, kernel and initramfs"
        if root_room < needed:
            raise InputError(
                f"{ctx.profile.where}: key 'disk.size': {int(disk.size) >> 20} MiB leaves "
                f"{root_room >> 20} MiB for the third partition, which needs about {needed >> 20} MiB "
                f"({what}: {payload >> 20} MiB)",
                hint=f"set disk.size to at least {((needed + int(disk.esp_size) + (4 << 20)) >> 20) + 1} MiB",
            )

    def build(self, ctx: StageContext, inputs: Inputs, scratch: Path) -> dict[str, Any]:
        engine = ctx.runner.engine
        assert engine is not None
        self.check_room(ctx, inputs)
        disk = ctx.profile.disk
        stage = ctx.profile.initramfs.stage if disk.layout == "installer" else disk.stage
        env = {"SOURCE_DATE_EPOCH": str(ctx.archive.source_date_epoch), "BK_SIZE": str(int(disk.size)),
               "BK_ESP_MIB": str(int(disk.esp_size) >> 20), "BK_SEED": self.seed(ctx),
               "BK_CMDLINE": f"{disk.cmdline} bootkiln.stage={stage}", "BK_LAYOUT": disk.layout,
               "BK_SECURE_BOOT": "1" if ctx.profile.secureboot.enabled else "0",
               **({"BK_UKI": f"/bootkiln/in/{UKI_INPUT}"} if "ukisign" in inputs else {}),
               "BK_ARCH": ctx.profile.debian.architecture}
        with tempfile.TemporaryDirectory(prefix="bootkiln-disk-") as folder:
            # The rootfs is large: stream it to the container from a file rather than from memory.
            bundle = Path(folder) / "inputs.tar"
            with tarfile.open(bundle, "w") as archive:
                for arcname, source in self.files(inputs):
                    archive.add(source, arcname=f"bootkiln/in/{arcname}")
            ctx.runner.run(["/bootkiln/" + SCRIPT], stage=self.name,
                           where=Builder(image=ctx.builder.tag, network="none", env=env,
                                         uploads=[scripts_upload(ctx, SCRIPT), Upload("/", bundle)],
                                         collect=[("/work/out", scratch)]),
                           hint="making the disk image failed; is disk.size large enough for the rootfs?")
        ids = dict(line.split("=", 1) for line in (scratch / "disk-ids.txt").read_text().split("\n") if "=" in line)
        return {"bytes": int(disk.size), "allocated_bytes": (scratch / "disk.img").stat().st_blocks * 512,
                "ids": ids}
