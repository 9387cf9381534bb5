"""Secure Boot: the session's ISO (as a CD and as a USB stick) and disk image boot under OVMF with
Secure Boot on and Microsoft's keys enrolled, and the initramfs reads SecureBoot=1 from the
firmware; the same ISO with its shim made unsigned is refused by the same firmware."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bootkiln.console import Reporter
from bootkiln.core.runner import Runner
from bootkiln.errors import EnvironmentProblem
from bootkiln.formats.pe import read_pe
from bootkiln.profile.schema import SECURE_BOOT_MODES, BootMode
from bootkiln.stages.base import StageResult
from bootkiln.verify.boottest import MARKER
from bootkiln.verify.qemu import Accel, boot, find_ovmf
from tests.conftest import component_missing
from tests.fixtures import SessionBuild
from tests.support.diskread import efi_file


@pytest.fixture(scope="session")
def secure_boot_ovmf(qemu_ready: None) -> None:
    try:
        find_ovmf(secure_boot=True)
    except EnvironmentProblem as exc:
        component_missing("OVMF with Secure Boot (OVMF_CODE_4M.ms.fd)", f"{exc.message} ({exc.hint})")


@pytest.mark.parametrize("mode", SECURE_BOOT_MODES)
def test_images_boot_under_secure_boot_with_microsofts_keys(
        mode: BootMode, session_build: SessionBuild, default_iso: StageResult, accel: Accel,
        secure_boot_ovmf: None, capsys: pytest.CaptureFixture[str]) -> None:
    image = (default_iso.artifact("boot.iso") if not mode.startswith("disk-")
             else session_build.build.disk().artifact("disk.img"))
    stage = "root" if mode.startswith("disk-") else "rescue"
    reporter = Reporter(quiet_output=True)
    result = boot(Runner(reporter), reporter, mode, image, marker=f"{MARKER} stage={stage}", accel=accel,
                  memory=512, timeout=300)
    with capsys.disabled():
        print(f"\n  {mode}: marker after {result.seconds:.1f}s ({accel})")
    assert result.passed, "\n".join(result.tail)
    marker = next(line for line in result.tail if MARKER in line)
    assert "secureboot=1" in marker, f"the firmware's SecureBoot variable was not 1: {marker}"


def test_plain_uefi_boot_reports_secure_boot_off(default_iso: StageResult, accel: Accel) -> None:
    """The marker's field is read from the firmware, not assumed: plain OVMF says 0."""
    reporter = Reporter(quiet_output=True)
    result = boot(Runner(reporter), reporter, "uefi-cd", default_iso.artifact("boot.iso"),
                  marker=f"{MARKER} stage=rescue", accel=accel, memory=512, timeout=240)
    assert result.passed, "\n".join(result.tail)
    marker = next(line for line in result.tail if MARKER in line)
    assert "secureboot=0" in marker, marker


def test_an_unsigned_shim_is_refused(session_build: SessionBuild, default_iso: StageResult, accel: Accel,
                                     secure_boot_ovmf: None, tmp_path: Path) -> None:
    """The same ISO with the certificate table of its shim emptied (an unsigned shim) is refused."""
    shim = efi_file(session_build.build.stage("bootloader").artifact("efiboot.img"), "EFI/BOOT/BOOTX64.EFI")
    info = read_pe(shim)
    assert info.signatures, "the ISO's shim carries an Authenticode signature"
    iso = tmp_path / "unsigned-shim.iso"
    shutil.copyfile(default_iso.artifact("boot.iso"), iso)
    data = bytearray(iso.read_bytes())
    where = data.find(shim[:1 << 16])
    assert where > 0 and data[where:where + len(shim)] == shim, "the shim is stored contiguously in the ISO"
    data[where + info.dir_entry:where + info.dir_entry + 8] = bytes(8)
    iso.write_bytes(bytes(data))
    reporter = Reporter(quiet_output=True)
    result = boot(Runner(reporter), reporter, "uefi-cd-sb", iso, marker="Access Denied", accel=accel,
                  memory=512, timeout=180)
    assert result.passed, "OVMF did not refuse the unsigned shim:\n" + "\n".join(result.tail)
    assert not any(MARKER in line for line in result.tail)
