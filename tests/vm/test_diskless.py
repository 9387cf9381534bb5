"""Diskless clients end to end: a TCG guest mounts its root over NFS from NFS-Ganesha on loopback and
reaches multi-user; the live variant boots the same tree from its own squashfs with no server."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pytest

from bootkiln.console import Reporter
from bootkiln.core.runner import Runner
from bootkiln.formats.arch import elf_machine
from bootkiln.profile.schema import BootMode
from bootkiln.stages.base import StageResult
from bootkiln.verify.qemu import Accel, BootResult, boot
from tests.conftest import component_missing
from tests.fixtures import DisklessBuild
from tests.support.nfsserver import NfsServer, exports_from_published

MARKER = "BOOTKILN-BOOT-OK stage=diskless"


@pytest.fixture
def nfs_ready() -> None:
    from tests.support import nfsserver

    missing = nfsserver.missing_packages()
    if missing:
        component_missing("NFS-Ganesha", f"missing packages: {', '.join(missing)}")


def extract(archive: Path, destination: Path, prefix: str = "") -> None:
    """Unpack a bootkiln tarball as root with its numeric owners (our own artifact: links may be absolute)."""
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tree:
        members = [m for m in tree.getmembers() if m.name.startswith(prefix)]
        tree.extractall(destination, members=members, numeric_owner=True, filter="fully_trusted")  # noqa: S202


def facts(marker_line: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", marker_line.split(MARKER, 1)[1]))


def boot_over_nfs(diskless: DisklessBuild, tmp_path: Path, mode: BootMode, accel: Accel,
                  arch: str = "amd64") -> BootResult:
    """Serve the build's client tree (and the rootfs's /usr) from NFS-Ganesha and boot its ISO."""
    root, server, home = tmp_path / "root", tmp_path / "server", tmp_path / "home"
    extract(diskless.nfsroot.artifact("nfsroot.tar"), root)
    extract(diskless.rootfs.artifact("rootfs.tar"), server, prefix="./usr")
    home.mkdir()
    # Serve what the build published for the server, each export from the folder the tree was unpacked to.
    published = diskless.build.workspace.output_dir(diskless.build.profile.name) / "ganesha-exports.conf"
    exports = exports_from_published(published.read_text(), {
        "/srv/bootkiln/diskless/root": root, "/srv/bootkiln/diskless/usr": server / "usr",
        "/srv/bootkiln/diskless/home": home})
    reporter = Reporter(quiet_output=True)
    iso = diskless.build.results["iso"].artifact("boot.iso")
    with NfsServer(exports, workdir=tmp_path / "nfs"):
        return boot(Runner(reporter), reporter, mode, iso, marker=MARKER, accel=accel, memory=1024,
                    timeout=300 if arch == "amd64" else 420, arch=arch)


def check_nfs_facts(result: BootResult, machine: str) -> None:
    assert result.passed, "\n".join(result.tail)
    seen = facts(next(line for line in result.tail if MARKER in line))
    assert seen["root"] == "nfs,ro" and seen["usr"] == "nfs,ro", seen
    assert seen["var"] == "tmpfs,rw" and int(seen["var_entries"]) >= 50, seen
    assert seen["syslog"] == "10.0.2.2:514", seen
    assert seen["arch"] == machine, seen


def test_diskless_client_boots_with_its_root_over_nfs(diskless: DisklessBuild, accel: Accel, nfs_ready: None,
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = boot_over_nfs(diskless, tmp_path, "bios-cd", accel)
    with capsys.disabled():
        print(f"\n  diskless over NFS: multi-user marker after {result.seconds:.1f}s ({accel})")
    check_nfs_facts(result, "x86_64")


def test_arm64_diskless_client_boots_under_uefi_with_its_root_over_nfs(
        diskless_arm64: DisklessBuild, qemu_arm64_ready: None, nfs_ready: None, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The arm64 client tree (bootstrapped under qemu-user) served by the same NFS-Ganesha, booted
    from its UEFI-only ISO in qemu-system-aarch64 (virt, AAVMF, TCG)."""
    busybox = diskless_arm64.build.stage("busybox").artifact("busybox").read_bytes()
    assert elf_machine(busybox[:64]) == 183, "an AArch64 busybox in the initramfs"
    result = boot_over_nfs(diskless_arm64, tmp_path, "uefi-cd", "tcg", arch="arm64")
    with capsys.disabled():
        print(f"\n  arm64 diskless over NFS (uefi-cd): multi-user marker after {result.seconds:.1f}s (tcg)")
    check_nfs_facts(result, "aarch64")


def test_unreachable_nfs_server_is_reported_and_retried(diskless: DisklessBuild, accel: Accel) -> None:
    reporter = Reporter(quiet_output=True)
    iso = diskless.build.results["iso"].artifact("boot.iso")
    result = boot(Runner(reporter), reporter, "bios-cd", iso, marker="(attempt 2)", accel=accel, memory=512,
                  timeout=180)
    assert result.passed, "\n".join(result.tail)
    errors = [line for line in result.tail if "ERROR: cannot mount 10.0.2.2:/srv/bootkiln/diskless/root" in line]
    assert len(errors) == 2 and "retrying in 10s" in "\n".join(result.tail)


def test_live_variant_boots_from_its_own_squashfs(diskless_live: StageResult, accel: Accel,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    reporter = Reporter(quiet_output=True)
    result = boot(Runner(reporter), reporter, "bios-cd", diskless_live.artifact("boot.iso"), marker=MARKER,
                  accel=accel, memory=1024, timeout=300)
    with capsys.disabled():
        print(f"\n  live variant: multi-user marker after {result.seconds:.1f}s ({accel}), "
              f"ISO {diskless_live.artifact('boot.iso').stat().st_size >> 20} MiB")
    assert result.passed, "\n".join(result.tail)
    seen = facts(next(line for line in result.tail if MARKER in line))
    assert seen["root"] == "overlay,rw" and seen["var"] == "tmpfs,rw" and int(seen["var_entries"]) >= 50, seen


def test_arm64_live_variant_boots_under_uefi_from_its_own_squashfs(diskless_live_arm64: StageResult,
                                                                   qemu_arm64_ready: None,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    reporter = Reporter(quiet_output=True)
    iso = diskless_live_arm64.artifact("boot.iso")
    result = boot(Runner(reporter), reporter, "uefi-cd", iso, marker=MARKER, accel="tcg", memory=1024, timeout=420,
                  arch="arm64")
    with capsys.disabled():
        print(f"\n  arm64 live variant (uefi-cd): multi-user marker after {result.seconds:.1f}s (tcg), "
              f"ISO {iso.stat().st_size >> 20} MiB")
    assert result.passed, "\n".join(result.tail)
    seen = facts(next(line for line in result.tail if MARKER in line))
    assert seen["root"] == "overlay,rw" and seen["var"] == "tmpfs,rw" and seen["arch"] == "aarch64", seen
