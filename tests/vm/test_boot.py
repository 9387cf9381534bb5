"""The default ISO boots to the marker in all four ways, and a boot that fails says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootkiln.console import Reporter
from bootkiln.core.runner import Runner
from bootkiln.profile.schema import ISO_BOOT_MODES, BootMode
from bootkiln.stages.base import StageResult
from bootkiln.verify.boottest import MARKER, BootFailed
from bootkiln.verify.qemu import Accel, boot
from tests.fixtures import SessionBuild, invoke
from tests.support.serialshell import shell_answers


@pytest.mark.parametrize("mode", ISO_BOOT_MODES)
def test_default_iso_boots_to_the_marker(mode: BootMode, default_iso: StageResult, accel: Accel,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    reporter = Reporter(quiet_output=True)
    result = boot(Runner(reporter), reporter, mode, default_iso.artifact("boot.iso"), marker=f"{MARKER} stage=rescue",
                  accel=accel, memory=512, timeout=240)
    with capsys.disabled():
        print(f"\n  {mode}: marker after {result.seconds:.1f}s ({accel})")
    assert result.passed, "\n".join(result.tail)
    assert any("network: eth0 10.0.2.15" in line for line in result.tail), "rescue brings the network up"


def test_the_rescue_shell_answers_on_the_serial_console(default_iso: StageResult, accel: Accel) -> None:
    answered, tail = shell_answers("bios-cd", default_iso.artifact("boot.iso"), arch="amd64", accel=accel,
                                   memory=512, marker=f"{MARKER} stage=rescue", timeout=240)
    assert answered, "\n".join(tail)


def test_a_boot_without_marker_fails_with_the_serial_tail(default_iso: StageResult, accel: Accel) -> None:
    reporter = Reporter(quiet_output=True)
    result = boot(Runner(reporter), reporter, "bios-cd", default_iso.artifact("boot.iso"),
                  marker="THIS-MARKER-NEVER-APPEARS", accel=accel, memory=512, timeout=15)
    assert not result.passed
    assert result.tail, "the serial console's last lines are kept for the report"
    error = BootFailed([result], timeout=15)
    assert "bios-cd" in error.message
    assert any("last serial lines" in line for line in error.details())


def test_boot_test_task_boots_every_mode(session_build: SessionBuild, default_iso: StageResult,
                                         qemu_ready: None, tmp_path: Path) -> None:
    result = invoke(["boot-test", "--mode", "bios-cd", "--mode", "uefi-usb"], env=session_build.env())
    assert result.returncode == 0, result.output[-3000:]
    assert "bios-cd   passed" in result.output and "uefi-usb  passed" in result.output
    assert "bios-usb  passed" not in result.output, "--mode limits the boots"


@pytest.mark.parametrize("mode", ["disk-bios", "disk-uefi"])
def test_default_disk_image_boots_its_ext4_root(mode: BootMode, default_disk: StageResult, accel: Accel,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    reporter = Reporter(quiet_output=True)
    result = boot(Runner(reporter), reporter, mode, default_disk.artifact("disk.img"),
                  marker=f"{MARKER} stage=root", accel=accel, memory=512, timeout=240)
    with capsys.disabled():
        print(f"\n  {mode}: marker after {result.seconds:.1f}s ({accel})")
    assert result.passed, "\n".join(result.tail)
    marker = next(line for line in result.tail if MARKER in line)
    assert "os=Debian GNU/Linux 12 (bookworm)" in marker, "the root filesystem on the disk was mounted"
