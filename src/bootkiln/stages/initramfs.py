"""initramfs stage: busybox, its applet links, the kernel's selected modules and /init, as a cpio.

Runs on the host: the cpio is written natively (bootkiln.formats.cpio) so its bytes depend only on the
inputs. Overlay: overlays/initramfs-base/ (and any the profile adds), which holds /init and the
profile stages it can run.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path
from typing import Any, Literal

from bootkiln.console import mib
from bootkiln.core.archguard import require_elf_file, require_modules
from bootkiln.core.overlay import OverlayEntry, overlay_archive, plan_overlays
from bootkiln.errors import InputError
from bootkiln.formats.cpio import CpioEntry, compress, write_newc
from bootkiln.profile.schema import Profile, is_installer, kernel_package, require_nfsroot
from bootkiln.stages.base import Inputs, StageBase, StageContext, base_fingerprint, code_files, require_initramfs_stage

# Present before devtmpfs is mounted: the kernel opens /dev/console for /init's output.
DEVICE_NODES = [CpioEntry("dev/console", "chardev", 0o600, rdev=(5, 1)),
                CpioEntry("dev/null", "chardev", 0o666, rdev=(1, 3))]
FOLDERS = [CpioEntry(path, "dir", mode) for path, mode in
           [("proc", 0o555), ("sys", 0o555), ("dev", 0o755), ("run", 0o755), ("tmp", 0o1777), ("root", 0o700),
            ("mnt", 0o755), ("etc", 0o755), ("bin", 0o755), ("sbin", 0o755), ("usr/bin", 0o755),
            ("usr/sbin", 0o755)]]


def busybox_entries(binary: bytes, applets: list[str]) -> list[CpioEntry]:
    """The binary at /bin/busybox and one symlink per applet at the path busybox installs it."""
    entries = [CpioEntry("bin/busybox", "file", 0o755, binary)]
    for applet_path in applets:
        path = applet_path.strip().lstrip("/")
        if path and path != "bin/busybox":
            entries.append(CpioEntry(path, "symlink", 0o777, b"/bin/busybox"))
    return entries


def module_entries(modules_tar: Path) -> list[CpioEntry]:
    entries = []
    with tarfile.open(modules_tar) as archive:
        for member in archive.getmembers():
            path = member.name.removeprefix("./")
            if member.isdir():
                entries.append(CpioEntry(path, "dir", 0o755))
            elif member.isfile():
                data = archive.extractfile(member)
                assert data is not None
                entries.append(CpioEntry(path, "file", 0o644, data.read()))
    return entries


def overlay_entries(planned: list[OverlayEntry]) -> list[CpioEntry]:
    entries = []
    for entry in planned:
        path = entry.path.lstrip("/")
        if entry.kind == "dir":
            entries.append(CpioEntry(path, "dir", entry.mode))
        elif entry.kind == "link":
            entries.append(CpioEntry(path, "symlink", 0o777, entry.target.encode()))
        else:
            entries.append(CpioEntry(path, "file", entry.mode, entry.source.read_bytes()))
    return entries


def nfsroot_settings(profile: Profile) -> str:
    """What the nfs stage of /init reads (shell assignments; every value is validated by the profile model)."""
    settings = profile.nfsroot
    if settings.nfsroot is None:
        return "NFSROOT=\n"
    return (f"NFSROOT={settings.nfsroot}\nNFSUSR={settings.mount_for('/usr')}\nNFSVERSION={settings.version}\n"
            f"NFSOPTS={settings.options}\nDEVICE={settings.device}\n")


def installer_settings(profile: Profile, mirror: str) -> str:
    """What the installer stage reads (shell assignments; every value is validated by the profile model).

    The installer fetches with busybox wget over plain HTTP: what it downloads is checked against
    pinned sha256 sums (its tools) or the archive's signatures (debootstrap), so the transport need
    not be trusted, and busybox's TLS would not check certificates anyway.
    """
    plain = re.sub(r"^https://", "http://", mirror)
    packages = ",".join(profile.rootfs.packages)
    return (f"BOOT_MIB={int(profile.installer.boot_size) >> 20}\nESP_MIB={int(profile.installer.esp_size) >> 20}\n"
            f"MIRROR={plain}\nSUITE={profile.debian.suite}\nVARIANT={profile.debian.variant}\n"
            f"PACKAGES={packages}\nKERNEL_PACKAGE={kernel_package(profile)}\n")


class InitramfsStage(StageBase):
    name = "initramfs"
    requires: tuple[str, ...] = ("busybox", "kernel")
    outputs: tuple[str, ...] = ("initrd.img",)

    def requires_for(self, profile: Profile) -> tuple[str, ...]:
        # An installer carries the pinned list of the tools an online install downloads.
        return (*self.requires, "online-tools") if is_installer(profile) else self.requires

    def check(self, profile: Profile) -> None:
        require_initramfs_stage(profile, "initramfs.stage", profile.initramfs.stage)
        if profile.initramfs.stage == "nfs":
            require_nfsroot(profile)

    def key(self, ctx: StageContext, inputs: Inputs) -> str:
        profile = ctx.profile
        fingerprint = (
            base_fingerprint(self, inputs)
            .add_json("initramfs", profile.initramfs.model_dump(mode="json"))
            .add_json("modules", profile.kernel.modules)
            .add_json("nfsroot", profile.nfsroot.model_dump(mode="json"))
            .add_json("installer", installer_settings(profile, ctx.archive.mirror) if is_installer(profile) else None)
            .add_text("name", profile.name)
            .add_text("epoch", str(ctx.archive.source_date_epoch))
        )
        for path in code_files("formats.cpio", "core.overlay", "stages.initramfs"):
            fingerprint.add_file(path.name, path)
        # An installer also carries the rootfs overlays (for an online install's target).
        parts: list[Literal["rootfs", "initramfs"]] = ["initramfs", "rootfs"] if is_installer(profile) else [
            "initramfs"]
        for part in parts:
            for entry in plan_overlays(profile, part):
                fingerprint.add_json(f"{part}-overlay-entry", entry.as_json())
                if entry.kind == "file":
                    fingerprint.add_file(f"{part}-overlay-data", entry.source)
        return fingerprint.hexdigest()

    def entries(self, ctx: StageContext, inputs: Inputs) -> list[CpioEntry]:
        profile = ctx.profile
        busybox = inputs["busybox"]
        kernel = inputs["kernel"]
        # An initramfs of another architecture's binaries boots to a kernel panic that names nothing.
        target = profile.debian.architecture
        require_elf_file(busybox.artifact("busybox"), target, "busybox")
        require_modules(kernel.artifact("modules.tar"), target)
        modules = "".join(f"{module}\n" for module in profile.kernel.modules)
        generated = [
            CpioEntry("etc/bootkiln/modules", "file", 0o644, modules.encode()),
            CpioEntry("etc/bootkiln/stage", "file", 0o644, f"{profile.initramfs.stage}\n".encode()),
            CpioEntry("etc/bootkiln/release", "file", 0o644, f"profile {profile.name}\n".encode()),
            CpioEntry("etc/bootkiln/nfsroot", "file", 0o644, nfsroot_settings(profile).encode()),
        ]
        if is_installer(profile):
            settings = installer_settings(profile, ctx.archive.mirror)
            generated.append(CpioEntry("etc/bootkiln/installer", "file", 0o644, settings.encode()))
            # For an online install: the tools to fetch, and what the rootfs overlays add to the target.
            generated.append(CpioEntry("etc/bootkiln/online-tools", "file", 0o644,
                                       inputs["online-tools"].artifact("online-tools.txt").read_bytes()))
            overlay = overlay_archive(plan_overlays(profile, "rootfs"), ctx.archive.source_date_epoch)
            generated.append(CpioEntry("etc/bootkiln/target-overlay.tar", "file", 0o644, overlay))
        layers = [
            FOLDERS,
            DEVICE_NODES,
            busybox_entries(busybox.artifact("busybox").read_bytes(),
                            busybox.artifact("applets.txt").read_text().split()),
            module_entries(kernel.artifact("modules.tar")),
            generated,
            overlay_entries(plan_overlays(profile, "initramfs")),
        ]
        merged: dict[str, CpioEntry] = {}
        for layer in layers:  # later layers win: the overlay can replace anything
            for entry in layer:
                merged[entry.path] = entry
        return list(merged.values())

    def build(self, ctx: StageContext, inputs: Inputs, scratch: Path) -> dict[str, Any]:
        settings = ctx.profile.initramfs
        archive = write_newc(self.entries(ctx, inputs), ctx.archive.source_date_epoch)
        packed = compress(archive, settings.compression, ctx.profile.debian.architecture)
        if settings.max_size is not None and len(packed) > settings.max_size:
            raise InputError(
                f"the initramfs is {mib(len(packed))} ({settings.compression}), over the profile's "
                f"initramfs.max_size of {mib(settings.max_size)}",
                hint="drop kernel modules or applets, choose xz compression, or raise initramfs.max_size",
            )
        (scratch / "initrd.img").write_bytes(packed)
        ctx.reporter.info(f"initramfs: {mib(len(archive))} cpio, {mib(len(packed))} {settings.compression}")
        return {"cpio_bytes": len(archive), "compressed_bytes": len(packed), "compression": settings.compression}

