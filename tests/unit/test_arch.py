"""Target architectures: the declared list, per-architecture defaults, and the guards that read bytes."""

from __future__ import annotations

import gzip
import io
import lzma
import struct
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from bootkiln.core.archguard import (
    require_deb,
    require_efi_image,
    require_elf,
    require_kernel_image,
    require_modules,
    require_pe,
)
from bootkiln.core.manifest import architectures
from bootkiln.errors import Fault, InputError, InternalError
from bootkiln.formats.arch import SUPPORTED, deb_field, debian_arch, elf_machine, kernel_image_arch, pe_machine
from bootkiln.pipeline import preflight
from bootkiln.profile.loader import load_profile

WriteProfile = Callable[[str], Path]


def elf(machine: int, *, wide: bool = True, big: bool = False) -> bytes:
    order = ">" if big else "<"
    ident = b"\x7fELF" + bytes([2 if wide else 1, 2 if big else 1, 1]) + bytes(9)
    return ident + struct.pack(order + "HHI", 1, machine, 1) + bytes(44)


def pe(machine: int) -> bytes:
    head = bytearray(0x100)
    head[:2] = b"MZ"
    head[0x3C:0x40] = (0x80).to_bytes(4, "little")
    head[0x80:0x84] = b"PE\0\0"
    head[0x84:0x86] = machine.to_bytes(2, "little")
    return bytes(head)


def bzimage() -> bytes:
    data = bytearray(0x1000)
    data[0x202:0x206] = b"HdrS"
    return bytes(data)


def arm64_image() -> bytes:
    data = bytearray(0x1000)
    data[0x38:0x3C] = b"ARM\x64"
    return bytes(data)


def deb(path: Path, architecture: str, compression: str = "xz") -> Path:
    control = f"Package: linux-image-test\nVersion: 1\nArchitecture: {architecture}\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("./control")
        info.size = len(control)
        archive.addfile(info, io.BytesIO(control))
    member = lzma.compress(buffer.getvalue()) if compression == "xz" else gzip.compress(buffer.getvalue())
    members = [("debian-binary", b"2.0\n"), (f"control.tar.{compression}", member), ("data.tar.xz", b"")]
    out = b"!<arch>\n"
    for name, data in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode() + data
        out += b"\n" if len(data) % 2 else b""
    path.write_bytes(out)
    return path


# --- the declared list and per-architecture defaults ---------------------------------------------

def test_supported_architectures_are_declared_and_others_refused(write_profile: WriteProfile) -> None:
    assert SUPPORTED == ("amd64", "arm64")
    for name in ("riscv64", "i386", "armhf"):
        with pytest.raises(InputError) as caught:
            load_profile(str(write_profile(f'[debian]\narchitecture = "{name}"\n')))
        assert caught.value.fault is Fault.INPUT
        assert "debian.architecture" in caught.value.message
        assert f"'{name}' is not a supported architecture" in caught.value.message
        assert "amd64, arm64" in caught.value.message


def test_arm64_defaults_fit_the_architecture(write_profile: WriteProfile) -> None:
    profile = load_profile(str(write_profile('[debian]\narchitecture = "arm64"\n')))
    assert "ena" in profile.kernel.modules and "nvme" in profile.kernel.modules
    assert not any(module.startswith("xen") for module in profile.kernel.modules)
    # Both serial ports (QEMU virt's PL011, Graviton's 16550), the one EC2 has last, and no tty0.
    assert profile.iso.cmdline == profile.disk.cmdline == "console=ttyAMA0,115200 console=ttyS0,115200"
    assert profile.boot.modes == ["uefi-cd", "uefi-usb"]
    amd64 = load_profile(None)
    assert "xen-blkfront" in amd64.kernel.modules and "ttyS0" in amd64.iso.cmdline
    # What a profile sets stays as it is.
    kept = load_profile(str(write_profile('[debian]\narchitecture = "arm64"\n[kernel]\nmodules = ["ext4"]\n')))
    assert kept.kernel.modules == ["ext4"]


def test_bios_modes_are_refused_for_arm64(write_profile: WriteProfile) -> None:
    with pytest.raises(InputError, match="arm64 machines have no BIOS"):
        load_profile(str(write_profile('[debian]\narchitecture = "arm64"\n[boot]\nmodes = ["bios-cd"]\n')))


def test_arm64_boots_debians_signed_chain_by_default_but_refuses_own_keys(write_profile: WriteProfile) -> None:
    arm64 = '[debian]\narchitecture = "arm64"\n'
    assert load_profile(str(write_profile(arm64))).secureboot.enabled
    signed = load_profile(str(write_profile(arm64 + '[boot]\nmodes = ["uefi-cd-sb", "disk-uefi-sb"]\n')))
    assert signed.boot.modes == ["uefi-cd-sb", "disk-uefi-sb"]
    assert not load_profile(str(write_profile("secureboot = false\n" + arm64))).secureboot.enabled
    with pytest.raises(InputError, match=r"own-key Unified Kernel Images .* amd64 only so far, not arm64"):
        load_profile(str(write_profile(arm64 + '[secureboot]\nkey = "db.key"\ncert = "db.crt"\n')))
    with pytest.raises(InputError, match="uefi-cd-ownkey: own-key Unified Kernel Images"):
        load_profile(str(write_profile(arm64 + '[boot]\nmodes = ["uefi-cd-ownkey"]\n')))


def test_engine_architecture_names() -> None:
    assert debian_arch("x86_64") == "amd64" and debian_arch("aarch64") == "arm64" and debian_arch("arm64") == "arm64"
    assert debian_arch("s390x") is None


def test_the_manifest_names_target_builder_and_how_foreign_binaries_ran() -> None:
    assert architectures("amd64", "amd64", {"iso": {}})["foreign_binaries"]["method"] == "none"
    cross = architectures("arm64", "amd64", {"busybox": {}, "kernel": {}, "iso": {}})
    assert (cross["target"], cross["builder"], cross["foreign_binaries"]["method"]) == ("arm64", "amd64", "cross")
    assert "cross-compiled" in cross["foreign_binaries"]["stages"]["busybox"]
    emulated = architectures("arm64", "amd64", {"rootfs": {"foreign_binaries": "qemu-user via binfmt_misc (x)"}})
    assert emulated["foreign_binaries"]["method"] == "cross+qemu-user"
    assert "qemu-user via binfmt_misc (x)" in emulated["foreign_binaries"]["stages"]["rootfs"]


# --- readers ------------------------------------------------------------------------------------

def test_elf_machine_of_either_class_and_byte_order() -> None:
    assert elf_machine(elf(62)) == 62
    assert elf_machine(elf(183, wide=False)) == 183
    assert elf_machine(elf(21, big=True)) == 21


def test_elf_machine_of_a_real_host_binary() -> None:
    expected = {"x86_64": 62, "aarch64": 183}[subprocess.run(["uname", "-m"], capture_output=True, text=True,
                                                             check=True).stdout.strip()]
    assert elf_machine(Path("/bin/true").read_bytes()[:64]) == expected


def test_pe_machine_and_kernel_image_type() -> None:
    assert pe_machine(pe(0x8664)) == 0x8664 and pe_machine(pe(0xAA64)) == 0xAA64
    assert kernel_image_arch(bzimage()) == "x86 bzImage"
    assert kernel_image_arch(arm64_image()) == "arm64 Image"
    assert kernel_image_arch(gzip.compress(arm64_image())) == "arm64 Image"
    assert kernel_image_arch(bytes(0x1000)) == "unknown"


def test_deb_control_field(tmp_path: Path) -> None:
    assert deb_field(deb(tmp_path / "a.deb", "arm64"), "Architecture") == "arm64"
    assert deb_field(deb(tmp_path / "b.deb", "amd64", "gz"), "Package") == "linux-image-test"


# --- guards -------------------------------------------------------------------------------------

def test_guards_refuse_the_wrong_architecture() -> None:
    require_elf(elf(183), "arm64", "busybox")
    with pytest.raises(InternalError, match="busybox is built for amd64, but the target is arm64"):
        require_elf(elf(62), "arm64", "busybox")
    require_pe(pe(0xAA64), "arm64", "BOOTAA64.EFI")
    with pytest.raises(InternalError, match="EFI binary for amd64, but the target is arm64"):
        require_pe(pe(0x8664), "arm64", "BOOTAA64.EFI")
    with pytest.raises(InternalError, match="not a PE image"):
        require_pe(b"\x7fELF" + bytes(100), "amd64", "BOOTX64.EFI")


def test_kernel_image_guard(tmp_path: Path) -> None:
    (tmp_path / "vmlinuz").write_bytes(bzimage())
    require_kernel_image(tmp_path / "vmlinuz", "amd64")
    with pytest.raises(InternalError, match="vmlinuz is a kernel image of type 'x86 bzImage', but the target is arm64"):
        require_kernel_image(tmp_path / "vmlinuz", "arm64")


def test_module_guard_reads_plain_and_xz_modules(tmp_path: Path) -> None:
    def modules(machine: int) -> Path:
        path = tmp_path / f"modules-{machine}.tar"
        with tarfile.open(path, "w") as archive:
            for name, data in (("lib/modules/6.1/a.ko", elf(machine)), ("lib/modules/6.1/b.ko.xz",
                                                                         lzma.compress(elf(machine))),
                               ("lib/modules/6.1/modules.dep", b"")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        return path

    assert require_modules(modules(183), "arm64") == 2
    with pytest.raises(InternalError, match=r"kernel module lib/modules/6.1/a.ko is built for amd64"):
        require_modules(modules(62), "arm64")


def test_efi_image_guard(tmp_path: Path) -> None:
    image = tmp_path / "efiboot.img"
    source = tmp_path / "BOOTX64.EFI"
    source.write_bytes(pe(0x8664))
    env = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}
    subprocess.run(["mformat", "-C", "-i", str(image), "-T", "2048", "-h", "2", "-s", "32", "::"], check=True,
                   env=env)
    subprocess.run(["mmd", "-i", str(image), "::/EFI", "::/EFI/BOOT"], check=True, env=env)
    subprocess.run(["mcopy", "-i", str(image), str(source), "::/EFI/BOOT/BOOTX64.EFI"], check=True, env=env)
    assert require_efi_image(image, "amd64") == ["EFI/BOOT/BOOTX64.EFI"]
    with pytest.raises(InternalError, match="EFI binary for amd64, but the target is arm64"):
        require_efi_image(image, "arm64")


def test_a_kernel_deb_for_another_architecture_is_refused_before_any_container(
        write_profile: WriteProfile, tmp_path: Path) -> None:
    deb(tmp_path / "kernel.deb", "amd64")
    profile = load_profile(str(write_profile('[debian]\narchitecture = "arm64"\n[kernel]\ndeb = "kernel.deb"\n')))
    with pytest.raises(InputError) as caught:
        preflight(profile, ("iso",))
    assert "key 'kernel.deb'" in caught.value.message
    assert "is a package for amd64, but debian.architecture is arm64" in caught.value.message
    require_deb(deb(tmp_path / "ok.deb", "arm64"), "arm64", "here")
    (tmp_path / "junk.deb").write_bytes(b"not a package")
    with pytest.raises(InputError, match="not a readable Debian package"):
        require_deb(tmp_path / "junk.deb", "arm64", "here")


def test_a_busybox_config_that_pins_an_architecture_is_refused_before_any_container(
        write_profile: WriteProfile, tmp_path: Path) -> None:
    original = (Path(__file__).resolve().parents[2] / "configs" / "busybox.config").read_text()
    for setting, named in (('CONFIG_EXTRA_CFLAGS="-O2 -march=x86-64-v2"', "-march=x86-64-v2"),
                           ('CONFIG_CROSS_COMPILER_PREFIX="x86_64-linux-gnu-"', "CROSS_COMPILER_PREFIX")):
        key = setting.split("=", 1)[0]
        (tmp_path / "busybox.config").write_text(original.replace(f'{key}=""', setting))
        profile = load_profile(str(write_profile('[debian]\narchitecture = "arm64"\n'
                                                 '[busybox]\nconfig = "busybox.config"\n')))
        with pytest.raises(InputError) as caught:
            preflight(profile, ("iso",))
        assert "busybox.config" in caught.value.message and named in caught.value.message
        assert "arm64" in caught.value.message
