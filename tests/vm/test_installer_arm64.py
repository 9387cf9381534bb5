"""The arm64 installer (profiles/installer-arm64.toml) under qemu-system-aarch64 (virt, AAVMF, TCG):
its ISO and disk image are UEFI-only, its initramfs starts on an aarch64 machine and asks the fake
IMDS for its user-data; in the slow tier, an offline install from the ISO onto a blank disk reboots
into the installed arm64 system (ESP p1 with GRUB arm64-efi, /boot p2, no BIOS boot partition).

The fast tests use the installer without its payload (installer.payload = false): the same
initramfs, kernel and boot path, without the arm64 rootfs (bootstrapped under qemu-user, about 2.5
minutes) and its single-threaded xz (about 2 more), which only the offline install needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootkiln.console import Reporter
from bootkiln.core.runner import Runner
from bootkiln.formats.arch import elf_machine, kernel_image_arch
from bootkiln.formats.gpt import read_primary
from bootkiln.installer.fakeimds import FakeImds
from bootkiln.pipeline import Build
from bootkiln.profile.loader import load_profile
from bootkiln.verify.boottest import MARKER
from bootkiln.verify.qemu import uefi_vars
from tests.fixtures import InstallerBuild, SessionBuild, profile_build, without_payload
from tests.support.installtest import install_argv, memory_for, run_install
from tests.vm.test_installer import HOSTNAME, blank_disk, make_userdata

ESP = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
LINUX_DATA = "0fc63daf-8483-4772-8e79-3d69d8477de4"
BIOS_BOOT = "21686148-6449-6e6f-744e-656564454649"


@pytest.fixture(scope="module")
def online_arm64(session_build: SessionBuild, tmp_path_factory: pytest.TempPathFactory) -> InstallerBuild:
    """installer-arm64 without its payload: ISO and disk image, on the session's cache."""
    profile = without_payload("installer-arm64", tmp_path_factory.mktemp("installer-arm64-online"))
    build = profile_build(session_build, tmp_path_factory, str(profile), "installer-arm64-online")
    assert load_profile(str(profile)).installer.payload is False
    return InstallerBuild(build, build.iso().artifact("boot.iso"), build.disk().artifact("disk.img"))


def partition_types(image: Path) -> list[str]:
    with image.open("rb") as handle:
        return [entry.type_guid for entry in read_primary(handle)]


def test_arm64_installer_images_are_uefi_only_and_arm64(online_arm64: InstallerBuild) -> None:
    build: Build = online_arm64.build
    assert elf_machine(build.stage("busybox").artifact("busybox").read_bytes()[:64]) == 183
    assert kernel_image_arch(build.stage("kernel").artifact("vmlinuz").read_bytes()[:4096]) == "arm64 Image"
    assert partition_types(online_arm64.iso) == [ESP], "the ISO: one ESP, no BIOS boot partition"
    # The disk image: the ESP is p1 and the installer's partition (the installed system's /boot) p2,
    # the numbers the installer's arm64 path expects.
    assert partition_types(online_arm64.disk) == [ESP, LINUX_DATA]
    assert BIOS_BOOT not in partition_types(online_arm64.disk)


def test_arm64_installer_iso_starts_under_uefi_and_asks_imds(online_arm64: InstallerBuild,
                                                             qemu_arm64_ready: None, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """No user-data: the installer says so and stops before touching the disk."""
    target = blank_disk(tmp_path / "target.img")
    reporter = Reporter(quiet_output=True)
    with uefi_vars("uefi-cd", None, "arm64") as (aavmf, store), FakeImds(None) as imds:
        argv = install_argv("iso", online_arm64.iso, target, imds_port=imds.port, accel="tcg", memory=1024,
                            firmware=aavmf, uefi_vars=store, arch="arm64")
        run = run_install(Runner(reporter), reporter, argv, timeout=420)
        requests = [(r.method, r.path, r.status) for r in imds.requests]
    shown = "\n".join(run.tail)
    markers = [line for line in run.tail if f"{MARKER} stage=installer" in line]
    with capsys.disabled():
        print(f"\n  arm64 installer ISO (uefi-cd): stopped after {run.seconds:.1f}s (tcg)")
    assert markers and "arch=aarch64" in markers[0], shown
    assert run.outcome == "failed", shown
    assert "this instance has no user-data" in shown and "installer: no disk was changed" in shown
    assert requests[:2] == [("PUT", "/latest/api/token", 200), ("GET", "/latest/user-data", 404)]


@pytest.mark.slow
def test_arm64_offline_install_from_the_iso_boots_the_installed_system(
        installer_arm64: InstallerBuild, qemu_arm64_ready: None, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    document = make_userdata(tmp_path, "/dev/vda")
    target = blank_disk(tmp_path / "target.img")
    reporter = Reporter(quiet_output=True)
    with uefi_vars("uefi-cd", None, "arm64") as (aavmf, store), FakeImds(document.path) as imds:
        argv = install_argv("iso", installer_arm64.iso, target, imds_port=imds.port, accel="tcg",
                            memory=memory_for(installer_arm64.build.profile), firmware=aavmf, uefi_vars=store,
                            arch="arm64")
        run = run_install(Runner(reporter), reporter, argv, timeout=3600)
    with capsys.disabled():
        print(f"\n  arm64 offline install from the ISO: install done at {run.done_at or 0:.1f}s, installed "
              f"system's marker at {run.installed_at or 0:.1f}s (tcg)")
    assert run.outcome == "installed", "\n".join(run.errors + run.tail)
    assert run.fields["hostname"] == HOSTNAME and run.fields["cert-sha256"] == document.cert_sha256
    assert run.fields["arch"] == "aarch64", run.fields
    assert partition_types(target)[:2] == [ESP, LINUX_DATA], "ESP p1, /boot p2: no BIOS boot partition"
