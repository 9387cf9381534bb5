"""build-iso for real: busybox, kernel, initramfs and boot files in the builder, the ISO by pycdlib."""

from __future__ import annotations

import hashlib
import json
import lzma
import struct
import tarfile
import zlib
from pathlib import Path

import pycdlib
import pytest

from bootkiln.console import Reporter
from bootkiln.core.engine import Engine
from bootkiln.formats.iso import list_iso
from bootkiln.pipeline import Build
from bootkiln.profile.loader import load_profile
from bootkiln.profile.schema import BASE_APPLETS
from bootkiln.stages.base import StageResult
from tests.fixtures import ROOT, SessionBuild, invoke
from tests.unit.test_cpio import parse_newc

MiB = 1024 * 1024


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def elf_program_header_types(binary: bytes) -> set[int]:
    assert binary[:4] == b"\x7fELF" and binary[4] == 2, "expected a 64-bit ELF"
    phoff, = struct.unpack_from("<Q", binary, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", binary, 0x36)
    return {struct.unpack_from("<I", binary, phoff + i * phentsize)[0] for i in range(phnum)}


def test_busybox_is_static_with_every_needed_applet(default_iso: StageResult, session_build: SessionBuild) -> None:
    busybox = session_build.build.results["busybox"]
    types = elf_program_header_types(busybox.artifact("busybox").read_bytes())
    pt_interp, pt_dynamic = 3, 2
    assert pt_interp not in types and pt_dynamic not in types, "busybox must be statically linked"
    applets = {line.rsplit("/", 1)[-1] for line in busybox.artifact("applets.txt").read_text().split()}
    assert set(BASE_APPLETS) <= applets
    assert busybox.metadata["source_version"].startswith("1:1.")


def test_kernel_carries_requested_modules_and_their_dependencies(
    default_iso: StageResult, session_build: SessionBuild
) -> None:
    kernel = session_build.build.results["kernel"]
    modules = kernel.metadata["modules"]
    names = {Path(path).name.split(".ko")[0].replace("-", "_") for path in modules}
    assert {"virtio_blk", "virtio_net", "nvme", "ena", "ext4", "squashfs", "overlay", "xen_blkfront"} <= names
    assert {"jbd2", "mbcache"} <= names, "ext4's dependencies come along"
    with tarfile.open(kernel.artifact("modules.tar")) as archive:
        members = archive.getnames()
        dep_name = next(n for n in members if n.endswith("/modules.dep"))
        dep_file = archive.extractfile(dep_name)
        assert dep_file is not None
        modules_dep = dep_file.read().decode()
    assert not any(n.endswith(".ko") and "/sound/" in n for n in members), "only what was asked for"
    assert "ext4.ko:" in modules_dep and "jbd2.ko" in modules_dep
    assert kernel.metadata["version"] in dep_name
    assert kernel.artifact("vmlinuz").read_bytes()[0x202:0x206] == b"HdrS", "a bzImage"


def test_initramfs_is_a_deterministic_cpio(default_iso: StageResult, session_build: SessionBuild) -> None:
    initramfs = session_build.build.results["initramfs"]
    records = parse_newc(lzma.decompress(initramfs.artifact("initrd.img").read_bytes()))
    by_name = {str(record["name"]): record for record in records}
    epoch = session_build.build.archive.source_date_epoch
    assert by_name["init"]["mode"] == 0o100755
    assert by_name["bin/sh"]["data"] == b"/bin/busybox"
    assert by_name["dev/console"]["rdev"] == (5, 1)
    assert by_name["etc/bootkiln/stage"]["data"] == b"rescue\n"
    assert any(name.endswith("/modules.dep") for name in by_name)
    content = [r for r in records if r["name"] != "TRAILER!!!"]
    assert {(r["uid"], r["gid"], r["mtime"]) for r in content} == {(0, 0, epoch)}


def test_iso_is_hybrid_with_bios_and_uefi_entries(default_iso: StageResult) -> None:
    path = default_iso.artifact("boot.iso")
    assert {"/boot/vmlinuz", "/boot/initrd.img", "/isolinux/isolinux.bin", "/isolinux/ldlinux.c32",
            "/boot/grub/grub.cfg", "/boot/grub/efi.img", "/bootkiln.id"} <= set(list_iso(path))
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        catalog = iso.eltorito_boot_catalog
        assert catalog is not None
        assert catalog.validation_entry.platform_id == 0
        assert [section.platform_id for section in catalog.sections] == [0xEF]
        assert iso.pvd.volume_identifier.rstrip(b" ") == b"BOOTKILN"
        grub = io_read(iso, "/boot/grub/grub.cfg")
        assert "console=ttyS0,115200" in grub
    finally:
        iso.close()
    data = path.read_bytes()
    assert data[510:512] == b"\x55\xaa", "isohybrid MBR"
    assert data[512:520] == b"EFI PART", "primary GPT"
    entries_lba, count, size = struct.unpack_from("<QII", data, 512 + 72)
    stored_crc, = struct.unpack_from("<I", data, 512 + 88)
    assert zlib.crc32(data[entries_lba * 512: entries_lba * 512 + count * size]) == stored_crc


def io_read(iso: pycdlib.PyCdlib, rr_path: str) -> str:
    import io

    buffer = io.BytesIO()
    iso.get_file_from_iso_fp(buffer, rr_path=rr_path)
    return buffer.getvalue().decode()


def test_default_iso_fits_the_reference_installer_size(default_iso: StageResult) -> None:
    # Was 12 MiB before Debian's signed chain: shim (1.0 MB) and the signed CD GRUB (3.8 MB) cannot be
    # trimmed without breaking their signatures (docs/secureboot.md, "Size").
    assert default_iso.artifact("boot.iso").stat().st_size <= 16 * MiB


def test_build_iso_prints_path_size_sha_and_writes_manifest(default_iso: StageResult,
                                                             session_build: SessionBuild) -> None:
    result = invoke(["build-iso"], env=session_build.env())
    assert result.returncode == 0, result.output
    digest = sha256(default_iso.artifact("boot.iso"))
    assert f"sha256 {digest}" in result.output and "boot.iso" in result.output and "MiB" in result.output
    for stage in ("kernel", "busybox", "initramfs", "bootloader", "iso"):
        assert f"{stage} from cache" in result.output
    out = session_build.out()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["archive"]["source_date_epoch"] == session_build.build.archive.source_date_epoch
    assert manifest["builder"]["image_id"].startswith("sha256:")
    assert manifest["stages"]["kernel"]["version"] and manifest["stages"]["kernel"]["modules"]
    assert manifest["stages"]["busybox"]["source_version"]
    assert {"shim-signed", "grub-efi-amd64-signed"} <= set(manifest["stages"]["bootloader"]["packages"])
    assert manifest["artifacts"]["boot.iso"] == digest
    assert f"{digest}  boot.iso" in (out / "SHA256SUMS").read_text()


def test_rescue_profile_iso_is_within_its_budget(default_iso: StageResult, session_build: SessionBuild) -> None:
    """16 MiB with Debian's signed shim and GRUB; 12 MiB, the old budget, with `secureboot = false`."""
    result = invoke(["build-iso", "--profile", "rescue"], env=session_build.env())
    assert result.returncode == 0, result.output
    assert (session_build.workspace.output_dir("rescue") / "boot.iso").stat().st_size <= 16 * MiB


def test_rescue_without_secure_boot_is_at_most_12_mib(default_iso: StageResult, session_build: SessionBuild,
                                                       tmp_path: Path) -> None:
    rescue = (ROOT / "profiles" / "rescue.toml").read_text()
    profile = tmp_path / "rescue-nosb.toml"
    profile.write_text("secureboot = false\n" + rescue)
    result = invoke(["build-iso", "--profile", str(profile)], env=session_build.env())
    assert result.returncode == 0, result.output
    assert (session_build.workspace.output_dir("rescue-nosb") / "boot.iso").stat().st_size <= 12 * MiB


def test_unchanged_rebuild_runs_no_container(default_iso: StageResult, session_build: SessionBuild,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def no_containers(*args: object, **kwargs: object) -> int:
        raise AssertionError("a cache hit must not start a container")

    monkeypatch.setattr(Engine, "run", no_containers)
    again = Build(load_profile(None), workspace=session_build.workspace, reporter=Reporter())
    assert again.iso().key == default_iso.key
    assert all(result.cached for result in again.results.values())


def test_overlay_change_rebuilds_only_initramfs_and_iso(default_iso: StageResult, session_build: SessionBuild,
                                                        tmp_path: Path) -> None:
    extra = tmp_path / "extra-overlay" / "etc"
    extra.mkdir(parents=True)
    (extra / "motd").write_text("first\n")
    profile = tmp_path / "overlaid.toml"
    profile.write_text('[initramfs]\noverlays = ["initramfs-base", "extra-overlay"]\n')
    first = Build(load_profile(str(profile)), workspace=session_build.workspace, reporter=Reporter())
    first.iso()
    (extra / "motd").write_text("second\n")
    second = Build(load_profile(str(profile)), workspace=session_build.workspace, reporter=Reporter())
    second.iso()
    rebuilt = {name for name, result in second.results.items() if not result.cached}
    assert rebuilt == {"initramfs", "iso"}
    assert second.results["iso"].key != first.results["iso"].key


def test_unknown_module_is_named_before_any_iso(isolated: dict[str, str], tmp_path: Path) -> None:
    profile = tmp_path / "typo.toml"
    profile.write_text('[kernel]\nmodules = ["virtio_blk", "virtio_nett"]\n')
    result = invoke(["build-iso", "--profile", str(profile)], env=isolated)
    assert result.returncode == 2, result.output
    assert "'virtio_nett'" in result.output and "kernel.modules" in result.output
    assert not list(Path(isolated["BOOTKILN_OUT"]).glob("**/boot.iso"))


@pytest.mark.parametrize(("table", "stage"), [("iso", "ISO"), ("initramfs", "initramfs")])
def test_size_budgets_are_enforced_with_figures(default_iso: StageResult, session_build: SessionBuild,
                                               tmp_path: Path, table: str, stage: str) -> None:
    profile = tmp_path / f"tight-{table}.toml"
    profile.write_text(f'[{table}]\nmax_size = "1MiB"\n')
    result = invoke(["build-iso", "--profile", str(profile)], env=session_build.env())
    assert result.returncode == 2, result.output
    assert f"the {stage} is" in result.output and "MiB" in result.output and f"{table}.max_size" in result.output


def test_a_module_the_arm64_kernel_lacks_is_named(isolated: dict[str, str], tmp_path: Path) -> None:
    # kvm_intel exists in the amd64 kernel package only: the arm64 package is the one searched.
    profile = tmp_path / "arm.toml"
    profile.write_text('[debian]\narchitecture = "arm64"\n[kernel]\nmodules = ["virtio_blk", "kvm_intel"]\n')
    result = invoke(["build", "--profile", str(profile), "--stage", "kernel"], env=isolated)
    assert result.returncode == 2, result.output
    assert "'kvm_intel'" in result.output and "kernel.modules" in result.output
    assert "the arm64 kernel package has no module named 'kvm_intel'" in result.output
