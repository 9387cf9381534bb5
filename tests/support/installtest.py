"""Run an installer end to end in QEMU: boot it with a disk to install on, let it fetch its user-data
from a fake IMDS, install, reboot, and wait for the installed system's own marker.

The installer logs `BOOTKILN-INSTALL-DONE` before it reboots, or `BOOTKILN-INSTALL-FAILED step=...`
when it stops; the installed system prints `BOOTKILN-INSTALLED hostname=... cert-sha256=...` from
a systemd unit (overlays/installed). One QEMU process sees all of it: the guest reboots in place.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bootkiln.console import Reporter
from bootkiln.core.runner import Runner
from bootkiln.installer.fakeimds import qemu_netdev
from bootkiln.profile.schema import Profile
from bootkiln.verify.qemu import ANSI, MACHINE_FOR, Accel, Firmware, firmware_args, qemu_binary

DONE = "BOOTKILN-INSTALL-DONE"
FAILED = "BOOTKILN-INSTALL-FAILED"
INSTALLED = "BOOTKILN-INSTALLED"
Medium = Literal["iso", "disk"]


@dataclass
class InstallRun:
    """What the serial console showed, with the time of each milestone since QEMU started."""

    outcome: Literal["installed", "failed", "timeout"]
    seconds: float
    done_at: float | None = None
    installed_at: float | None = None
    fields: dict[str, str] = field(default_factory=dict)
    done_fields: dict[str, str] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)


def install_argv(medium: Medium, image: Path, target: Path | None, *, imds_port: int, accel: Accel,
                 memory: int, firmware: Firmware | None = None, uefi_vars: Path | None = None,
                 arch: str = "amd64") -> list[str]:
    """QEMU with the installer medium, a virtio disk to install on and user networking that reaches
    the fake IMDS at 169.254.169.254. No -no-reboot: the installer's reboot must boot the new system.
    With `firmware` (and a copy of its variable store) the machine boots UEFI, else BIOS; arm64
    (virt) boots UEFI only, so it needs them."""
    if arch != "amd64":
        return uefi_only_argv(medium, image, target, imds_port=imds_port, accel=accel, memory=memory,
                              firmware=firmware, uefi_vars=uefi_vars, arch=arch)
    argv = [qemu_binary(), "-machine", "q35", "-accel", accel, "-m", str(memory), "-smp", "1",
            "-display", "none", "-vga", "std", "-serial", "stdio", "-monitor", "none",
            "-netdev", qemu_netdev(imds_port), "-device", "virtio-net-pci,netdev=net0"]
    if firmware is not None and uefi_vars is not None:
        argv += firmware_args("uefi-cd", firmware, uefi_vars)
    if medium == "iso":
        # The disk first: blank, SeaBIOS skips it for the CD; installed, it boots.
        argv += ["-drive", f"file={image},media=cdrom,if=ide,index=2,readonly=on", "-boot", "order=cd"]
    else:
        # The installer's disk image is the first disk (it becomes the installed system's /boot).
        argv += ["-drive", f"file={image},format=raw,if=virtio,index=0"]
    if target is not None:
        # cache=unsafe: the guest's flushes (dpkg syncs every file) need not reach the host's disk,
        # which only slows emulated installs down; the image is scratch until the test reads it.
        argv += ["-drive", f"file={target},format=raw,if=virtio,index=1,cache=unsafe"]
    return argv


def uefi_only_argv(medium: Medium, image: Path, target: Path | None, *, imds_port: int, accel: Accel,
                   memory: int, firmware: Firmware | None, uefi_vars: Path | None, arch: str) -> list[str]:
    """An arm64 machine (virt, AAVMF): the disk to install on (/dev/vda) comes first in the boot order,
    so AAVMF passes over it while it is blank and boots the installed system after the reboot; the
    installer ISO hangs off virtio-scsi (virt has no IDE), or the installer's disk image is /dev/vda."""
    assert firmware is not None and uefi_vars is not None, f"{arch} machines boot UEFI only"
    argv = [qemu_binary(arch), *MACHINE_FOR[arch], "-accel", accel, "-m", str(memory), "-smp", "1",
            "-display", "none", "-serial", "stdio", "-monitor", "none",
            "-netdev", qemu_netdev(imds_port), "-device", "virtio-net-pci,netdev=net0",
            *firmware_args("uefi-cd", firmware, uefi_vars)]
    disks = [target] if medium == "iso" else [image, target]
    for index, disk in enumerate(disk for disk in disks if disk is not None):
        # cache=unsafe, as above: the guest's flushes need not reach the host's disk.
        argv += ["-drive", f"file={disk},format=raw,if=none,id=disk{index},cache=unsafe",
                 "-device", f"virtio-blk-pci,drive=disk{index},bootindex={index}"]
    if medium == "iso":
        argv += ["-device", "virtio-scsi-pci,id=scsi",
                 "-drive", f"file={image},media=cdrom,if=none,id=cd,readonly=on",
                 "-device", "scsi-cd,bus=scsi.0,drive=cd,bootindex=9"]
    return argv


def parse_fields(line: str, marker: str) -> dict[str, str]:
    return dict(re.findall(r"([a-z0-9-]+)=(\S+)", line.split(marker, 1)[-1]))


def run_install(runner: Runner, reporter: Reporter, argv: list[str], *, timeout: float,
                stop_at_failure: bool = True) -> InstallRun:
    """Follow the console until the installed system's marker, a failure, or the timeout."""
    start = time.monotonic()
    seen: dict[str, float] = {}
    errors: list[str] = []
    fields: dict[str, str] = {}
    done_fields: dict[str, str] = {}
    steps: list[str] = []

    def until(line: str) -> bool:
        now = time.monotonic() - start
        if "bootkiln: installer: " in line:
            steps.append(line.strip())
        if "installer: step '" in line or "ERROR" in line:
            errors.append(line.strip())
        if DONE in line:
            seen.setdefault(DONE, now)
            done_fields.update(parse_fields(line, DONE))
        if FAILED in line:
            seen.setdefault(FAILED, now)
            return stop_at_failure
        if INSTALLED in line:
            seen[INSTALLED] = now
            fields.update(parse_fields(line, INSTALLED))
            return True
        return False

    result = runner.watch(argv, stage="install", until=until, timeout=timeout, clean=lambda line: ANSI.sub("", line))
    outcome: Literal["installed", "failed", "timeout"] = (
        "installed" if INSTALLED in seen else "failed" if FAILED in seen else "timeout")
    reporter.info(f"install: {outcome} after {result.seconds:.1f}s")
    return InstallRun(outcome, result.seconds, seen.get(DONE), seen.get(INSTALLED), fields, done_fields, steps,
                      errors, result.tail)


def memory_for(profile: Profile) -> int:
    """The offline install unpacks its rootfs in memory first: give the guest room for it."""
    return max(profile.boot.memory, 1024)
