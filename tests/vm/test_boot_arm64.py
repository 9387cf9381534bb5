"""The arm64 rescue ISO, built on this (amd64) host, boots under UEFI in qemu-system-aarch64 (virt,
AAVMF, TCG) as a CD and as a USB stick, and the marker says the machine is aarch64. Under AAVMF with
Secure Boot on and Microsoft's keys, Debian's signed arm64 chain boots (secureboot=1) and an unsigned
shim is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bootkiln.console import Reporter
from bootkiln.core.archguard import require_efi_image
from bootkiln.core.runner import Runner
from bootkiln.errors import EnvironmentProblem
from bootkiln.formats.arch import elf_machine, kernel_image_arch
from bootkiln.formats.gpt import read_primary
from bootkiln.formats.pe import read_pe
from bootkiln.pipeline import Build
from bootkiln.profile.schema import BootMode
from bootkiln.stages.base import StageResult
from bootkiln.verify.boottest import MARKER, on_machine
from bootkiln.verify.qemu import boot, find_ovmf, qemu_argv
from tests.conftest import component_missing
from tests.support.diskread import efi_file
from tests.support.serialshell import shell_answers

ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"


def test_the_arm64_build_holds_only_arm64_binaries(arm64_build: Build) -> None:
    busybox = arm64_build.stage("busybox").artifact("busybox").read_bytes()
    assert elf_machine(busybox[:64]) == 183, "busybox is an AArch64 ELF"
    assert kernel_image_arch(arm64_build.stage("kernel").artifact("vmlinuz").read_bytes()[:4096]) == "arm64 Image"
    assert sorted(require_efi_image(arm64_build.stage("bootloader").artifact("efiboot.img"), "arm64")) == [
        "EFI/BOOT/BOOTAA64.EFI", "EFI/BOOT/grubaa64.efi"], "Debian's signed shim and CD GRUB"
    assert {"shim-signed", "shim-helpers-arm64-signed", "grub-efi-arm64-signed"} <= set(
        arm64_build.stage("bootloader").metadata["packages"])
    assert "isolinux.bin" not in arm64_build.stage("bootloader").metadata["sha256"], "no BIOS files"
    manifest = arm64_build.manifest({})
    assert manifest["architectures"]["target"] == "arm64"
    assert manifest["architectures"]["builder"] == arm64_build.builder.architecture
    iso = arm64_build.stage("iso").artifact("boot.iso")
    with iso.open("rb") as handle:
        entries = read_primary(handle)
    assert [entry.type_guid for entry in entries] == [ESP_TYPE], "one ESP, no BIOS boot partition"
    head = iso.read_bytes()[:512]
    assert head[510:512] == b"\x55\xaa" and head[450] == 0xEE, "a protective MBR"


@pytest.mark.parametrize("mode", ["uefi-cd", "uefi-usb"])
def test_arm64_iso_boots_under_uefi_to_an_aarch64_marker(mode: BootMode, arm64_build: Build,
                                                         qemu_arm64_ready: None,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    reporter = Reporter(quiet_output=True)
    result = boot(Runner(reporter), reporter, mode, arm64_build.stage("iso").artifact("boot.iso"),
                  marker=f"{MARKER} stage=rescue", accel="tcg", memory=1024, timeout=300, arch="arm64")
    with capsys.disabled():
        print(f"\n  arm64 {mode}: marker after {result.seconds:.1f}s (tcg)")
    assert result.passed, "\n".join(result.tail)
    assert on_machine(result, "aarch64").passed, "\n".join(result.tail)
    assert not on_machine(result, "x86_64").passed, "a marker from another machine is refused"


def test_the_arm64_rescue_shell_answers_on_the_virt_machines_serial_console(arm64_build: Build,
                                                                             qemu_arm64_ready: None) -> None:
    """QEMU virt's serial port is ttyAMA0, so a shell fixed to ttyS0 would never answer there."""
    answered, tail = shell_answers("uefi-cd", arm64_build.stage("iso").artifact("boot.iso"), arch="arm64",
                                   accel="tcg", memory=1024, marker=f"{MARKER} stage=rescue", timeout=300)
    assert answered, "\n".join(tail)


def test_arm64_disk_image_boots_its_ext4_root(arm64_build: Build, arm64_disk: StageResult, qemu_arm64_ready: None,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    image = arm64_disk.artifact("disk.img")
    with image.open("rb") as handle:
        entries = read_primary(handle)
    assert entries[0].type_guid == ESP_TYPE and len(entries) == 2, "UEFI only: an ESP and the root, no BIOS boot"
    rootfs = arm64_build.stage("rootfs")
    assert "qemu-user via binfmt_misc" in rootfs.metadata["foreign_binaries"]
    reporter = Reporter(quiet_output=True)
    result = boot(Runner(reporter), reporter, "disk-uefi", image, marker=f"{MARKER} stage=root", accel="tcg",
                  memory=1024, timeout=300, arch="arm64")
    with capsys.disabled():
        print(f"\n  arm64 disk-uefi: marker after {result.seconds:.1f}s (tcg)")
    assert result.passed, "\n".join(result.tail)
    marker = next(line for line in result.tail if MARKER in line)
    assert "os=Debian GNU/Linux 12 (bookworm)" in marker and "arch=aarch64" in marker


def test_arm64_boots_use_virt_and_aavmf(tmp_path: Path, qemu_arm64_ready: None) -> None:
    firmware = find_ovmf("arm64")
    argv = qemu_argv("uefi-cd", tmp_path / "boot.iso", accel="tcg", memory=1024, firmware=firmware,
                     vars_copy=tmp_path / "vars.fd", arch="arm64")
    assert argv[0].endswith("qemu-system-aarch64") and argv[1:3] == ["-machine", "virt"]
    assert f"if=pflash,format=raw,unit=0,readonly=on,file={firmware.code}" in argv
    assert "AAVMF" in str(firmware.code)
    assert "-vga" not in argv and "scsi-cd,bus=scsi.0,drive=cd,bootindex=1" in argv


@pytest.fixture(scope="session")
def secure_boot_aavmf(qemu_arm64_ready: None) -> None:
    try:
        find_ovmf("arm64", secure_boot=True)
    except EnvironmentProblem as exc:
        component_missing("AAVMF with Secure Boot (AAVMF_CODE.ms.fd)", f"{exc.message} ({exc.hint})")


@pytest.mark.parametrize("mode", ["uefi-cd-sb", "disk-uefi-sb"])
def test_arm64_signed_chain_boots_under_secure_boot(mode: BootMode, arm64_build: Build, secure_boot_aavmf: None,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    disk = mode.startswith("disk-")
    image = arm64_build.disk().artifact("disk.img") if disk else arm64_build.stage("iso").artifact("boot.iso")
    reporter = Reporter(quiet_output=True)
    result = boot(Runner(reporter), reporter, mode, image, marker=f"{MARKER} stage={'root' if disk else 'rescue'}",
                  accel="tcg", memory=1024, timeout=300, arch="arm64")
    with capsys.disabled():
        print(f"\n  arm64 {mode}: marker after {result.seconds:.1f}s (tcg)")
    assert result.passed, "\n".join(result.tail)
    marker = next(line for line in result.tail if MARKER in line)
    assert "secureboot=1" in marker and "arch=aarch64" in marker, marker


def test_arm64_unsigned_shim_is_refused_under_secure_boot(arm64_build: Build, secure_boot_aavmf: None,
                                                          tmp_path: Path) -> None:
    """The same ISO with its shim's certificate table emptied: AAVMF refuses it ("Access Denied")."""
    shim = efi_file(arm64_build.stage("bootloader").artifact("efiboot.img"), "EFI/BOOT/BOOTAA64.EFI")
    info = read_pe(shim)
    assert info.signatures, "the arm64 ISO's shim carries an Authenticode signature"
    iso = tmp_path / "unsigned-shim.iso"
    shutil.copyfile(arm64_build.stage("iso").artifact("boot.iso"), iso)
    data = bytearray(iso.read_bytes())
    where = data.find(shim[:1 << 16])
    assert where > 0 and data[where:where + len(shim)] == shim, "the shim is stored contiguously in the ISO"
    data[where + info.dir_entry:where + info.dir_entry + 8] = bytes(8)
    iso.write_bytes(bytes(data))
    reporter = Reporter(quiet_output=True)
    result = boot(Runner(reporter), reporter, "uefi-cd-sb", iso, marker="Access Denied", accel="tcg",
                  memory=1024, timeout=180, arch="arm64")
    assert result.passed, "AAVMF did not refuse the unsigned shim:\n" + "\n".join(result.tail)
    assert not any(MARKER in line for line in result.tail)


def test_arm64_secure_boot_firmware_has_no_smm(tmp_path: Path, secure_boot_aavmf: None) -> None:
    firmware = find_ovmf("arm64", secure_boot=True)
    assert firmware.code.name == "AAVMF_CODE.ms.fd" and firmware.vars_template.name == "AAVMF_VARS.ms.fd"
    argv = qemu_argv("uefi-cd-sb", tmp_path / "boot.iso", accel="tcg", memory=1024, firmware=firmware,
                     vars_copy=tmp_path / "vars.fd", arch="arm64")
    assert argv[1:3] == ["-machine", "virt"], "no smm=on: Arm has no SMM"
    assert "driver=cfi.pflash01,property=secure,value=on" not in argv
    assert "scsi-cd,bus=scsi.0,drive=cd,bootindex=1" in argv
