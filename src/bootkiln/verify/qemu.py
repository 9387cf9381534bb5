"""Booting images in QEMU: the four ways a hybrid ISO is started, and waiting for the boot marker.

No Docker here: QEMU runs on the host. KVM is used when it works; where /dev/kvm exists but hangs
(nested or broken virtualisation), a short probe notices and TCG is used instead.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from bootkiln.console import Reporter
from bootkiln.core.runner import Runner, WatchResult
from bootkiln.errors import EnvironmentProblem
from bootkiln.profile.schema import BootMode

Accel = Literal["kvm", "tcg"]
QEMU = "qemu-system-x86_64"
# Per target architecture: the QEMU binary, its Debian package, the machine, and its UEFI firmware.
QEMU_FOR = {"amd64": (QEMU, "qemu-system-x86"), "arm64": ("qemu-system-aarch64", "qemu-system-arm")}
# cortex-a72: under TCG "max" adds pointer authentication, which costs a lot of time.
MACHINE_FOR = {"amd64": ["-machine", "q35", "-vga", "std"], "arm64": ["-machine", "virt", "-cpu", "cortex-a72"]}
AAVMF_CANDIDATES = [("/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd")]
OVMF_CANDIDATES = [
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
    ("/usr/share/qemu/OVMF_CODE.fd", "/usr/share/qemu/OVMF_VARS.fd"),
]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|[\x00-\x08\x0b-\x1f]")
PROBE_MARKER = "Linux version"
# Secure Boot on, Microsoft's keys enrolled (Debian's ovmf package). This firmware only runs with
# SMM emulated and its flash marked secure, so the variable store cannot be written around it.
OVMF_SECURE_BOOT = ("/usr/share/OVMF/OVMF_CODE_4M.ms.fd", "/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
# arm64: Secure Boot on, Microsoft's keys enrolled (qemu-efi-aarch64). Arm has no SMM: this build keeps
# its variables in ordinary flash.
AAVMF_SECURE_BOOT = ("/usr/share/AAVMF/AAVMF_CODE.ms.fd", "/usr/share/AAVMF/AAVMF_VARS.ms.fd")


@dataclass(frozen=True)
class Firmware:
    code: Path
    vars_template: Path
    secure_boot: bool = False
    smm: bool = False  # the variable store lives in SMM: QEMU must emulate it and mark the flash secure


def qemu_binary(arch: str = "amd64") -> str:
    binary, package = QEMU_FOR[arch]
    found = shutil.which(binary)
    if not found:
        raise EnvironmentProblem(f"{binary} is not installed (it boots {arch} images)",
                                 hint=f"apt-get install {package} (tools/setup-host.sh does)")
    return found


def find_ovmf(arch: str = "amd64", *, secure_boot: bool = False) -> Firmware:
    if secure_boot:
        code, variables = OVMF_SECURE_BOOT if arch == "amd64" else AAVMF_SECURE_BOOT
        if Path(code).is_file() and Path(variables).is_file():
            return Firmware(Path(code), Path(variables), secure_boot=True, smm=arch == "amd64")
        package = "ovmf" if arch == "amd64" else "qemu-efi-aarch64"
        raise EnvironmentProblem(f"no Secure Boot UEFI firmware ({code} with {Path(variables).name}) found",
                                 hint=f"apt-get install {package} (Debian's package ships the .ms.fd files)")
    for code, variables in OVMF_CANDIDATES if arch == "amd64" else AAVMF_CANDIDATES:
        if Path(code).is_file() and Path(variables).is_file():
            return Firmware(Path(code), Path(variables))
    if arch == "amd64":
        raise EnvironmentProblem("no OVMF (UEFI firmware for QEMU) found in /usr/share/OVMF",
                                 hint="apt-get install ovmf")
    raise EnvironmentProblem("no AAVMF (arm64 UEFI firmware for QEMU) found in /usr/share/AAVMF",
                             hint="apt-get install qemu-efi-aarch64")


def is_secure_boot(mode: BootMode) -> bool:
    # -ownkey: the same firmware, with a variable store holding the profile's certificate (verify/ovmfkeys.py).
    return mode.endswith(("-sb", "-ownkey"))


def is_uefi(mode: BootMode) -> bool:
    return mode.startswith("uefi") or mode.startswith("disk-uefi")


def boots_iso(mode: BootMode) -> bool:
    return not mode.startswith("disk-")


def media_args(mode: BootMode, image: Path, arch: str = "amd64") -> list[str]:
    """How the image is attached: a CD-ROM drive, a USB stick holding the hybrid ISO, or a virtio disk."""
    if not boots_iso(mode):
        # snapshot=on: the guest may write (its root fs journal), the image file never changes.
        return ["-drive", f"file={image},format=raw,if=virtio,snapshot=on"]
    cd = mode.removesuffix("-sb").removesuffix("-ownkey").endswith("-cd")
    if cd and arch == "arm64":
        # virt has no IDE: the CD drive hangs off virtio-scsi.
        return ["-device", "virtio-scsi-pci,id=scsi", "-drive", f"file={image},media=cdrom,if=none,id=cd,readonly=on",
                "-device", "scsi-cd,bus=scsi.0,drive=cd,bootindex=1"]
    if cd:
        return ["-drive", f"file={image},media=cdrom,if=ide,index=2,readonly=on", "-boot", "order=d"]
    return ["-device", "qemu-xhci,id=xhci",
            "-drive", f"file={image},format=raw,if=none,id=stick,readonly=on",
            "-device", "usb-storage,bus=xhci.0,drive=stick,bootindex=1"]


def firmware_args(mode: BootMode, firmware: Firmware | None, vars_copy: Path | None) -> list[str]:
    if not is_uefi(mode):
        return []
    assert firmware is not None and vars_copy is not None
    secure = ["-global", "driver=cfi.pflash01,property=secure,value=on"] if firmware.smm else []
    return [*secure, "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={firmware.code}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]


def qemu_argv(mode: BootMode, image: Path, *, accel: Accel, memory: int, firmware: Firmware | None = None,
              vars_copy: Path | None = None, arch: str = "amd64") -> list[str]:
    machine = MACHINE_FOR[arch][:2]
    if firmware is not None and firmware.smm:
        # OVMF's Secure Boot build keeps its variables in SMM, out of the guest's reach.
        machine = [machine[0], f"{machine[1]},smm=on"]
    return [
        qemu_binary(arch), *machine, "-accel", accel, "-m", str(memory), "-smp", "1",
        "-display", "none", *MACHINE_FOR[arch][2:], "-serial", "stdio", "-monitor", "none", "-no-reboot",
        "-nic", "user,model=virtio-net-pci",
        *firmware_args(mode, firmware, vars_copy),
        *media_args(mode, image, arch),
    ]


@contextmanager
def uefi_vars(mode: BootMode, vars_template: Path | None = None,
              arch: str = "amd64") -> Iterator[tuple[Firmware | None, Path | None]]:
    """A private copy of the writable UEFI variable store for one boot (`vars_template` replaces the
    firmware's own, e.g. one with the user's certificate enrolled in db)."""
    if not is_uefi(mode):
        yield None, None
        return
    firmware = find_ovmf(arch, secure_boot=is_secure_boot(mode))
    if vars_template is not None:
        firmware = replace(firmware, vars_template=vars_template)
    with tempfile.TemporaryDirectory(prefix="bootkiln-ovmf-") as scratch:
        copy = Path(scratch) / "vars.fd"
        shutil.copyfile(firmware.vars_template, copy)
        yield firmware, copy


def host_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


def kvm_usable() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def choose_accel(runner: Runner, kernel: Path, *, probe_seconds: float = 8.0, arch: str = "amd64") -> Accel:
    """KVM if a kernel starts printing under it within the probe time, else TCG.

    BOOTKILN_ACCEL=kvm|tcg skips the probe.
    """
    forced = os.environ.get("BOOTKILN_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced  # type: ignore[return-value]
    if not kvm_usable() or arch != host_arch():
        return "tcg"
    argv = [qemu_binary(), "-accel", "kvm", "-m", "256", "-display", "none", "-serial", "stdio",
            "-monitor", "none", "-no-reboot", "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1"]
    probe = runner.watch(argv, stage="kvm-probe", until=lambda line: PROBE_MARKER in line,
                         timeout=probe_seconds, quiet=True)
    return "kvm" if probe.matched else "tcg"


@dataclass(frozen=True)
class BootResult:
    mode: BootMode
    seconds: float
    passed: bool
    tail: list[str]
    accel: Accel


def boot(runner: Runner, reporter: Reporter, mode: BootMode, image: Path, *, marker: str, accel: Accel,
         memory: int, timeout: float, vars_template: Path | None = None, arch: str = "amd64") -> BootResult:
    with uefi_vars(mode, vars_template, arch) as (firmware, vars_copy):
        argv = qemu_argv(mode, image, accel=accel, memory=memory, firmware=firmware, vars_copy=vars_copy,
                         arch=arch)
        result: WatchResult = runner.watch(argv, stage=mode, until=lambda line: marker in line, timeout=timeout,
                                           clean=lambda line: ANSI.sub("", line))
    return BootResult(mode, result.seconds, result.matched, result.tail, accel)

