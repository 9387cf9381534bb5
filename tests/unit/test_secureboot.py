"""Secure Boot inputs: Authenticode signatures read from PE headers, a kernel.deb without one refused
in preflight (exit 2, before any container) unless the profile says `secureboot = false`."""

from __future__ import annotations

import io
import lzma
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from bootkiln.errors import Fault, InputError
from bootkiln.formats.corrupt import CorruptArtifact
from bootkiln.formats.deb import deb_file
from bootkiln.formats.pe import read_pe, without_signature
from bootkiln.pipeline import preflight
from bootkiln.profile.loader import load_profile

ROOT = Path(__file__).resolve().parents[2]


def pe_image(*, signed: bool, machine: int = 0x8664) -> bytes:
    """A PE32+ header with 16 data directories and, if signed, one PKCS#7 WIN_CERTIFICATE."""
    dos = bytearray(0x80)
    dos[:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x80)
    optional = bytearray(240)
    struct.pack_into("<H", optional, 0, 0x20B)
    struct.pack_into("<I", optional, 108, 16)
    image = bytearray(dos + b"PE\0\0" + struct.pack("<HHIIIHH", machine, 0, 0, 0, 0, len(optional), 0x22)
                      + optional + b"\0" * 8)
    if signed:
        certificate = struct.pack("<IHH", 24, 0x0200, 0x0002) + b"pkcs7-der-bytes."
        struct.pack_into("<II", image, 0x80 + 24 + 112 + 8 * 4, len(image), len(certificate))
        image += certificate
    return bytes(image)


def test_signatures_are_counted_and_can_be_removed() -> None:
    signed = pe_image(signed=True)
    info = read_pe(signed)
    assert (info.machine, info.signatures, info.cert_size) == ("x86_64", 1, 24)
    unsigned = without_signature(signed)
    assert read_pe(unsigned).signatures == 0 and read_pe(unsigned).cert_offset == 0
    assert len(unsigned) == info.cert_offset
    assert read_pe(pe_image(signed=False, machine=0xAA64)).machine == "aarch64"


@pytest.mark.parametrize("data", [b"", b"ELF" * 40, b"MZ" + b"\0" * 0x3A + b"\x40\0\0\0" + b"NOPE"])
def test_what_is_not_a_pe_file_is_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptArtifact):
        read_pe(data)


def tar_of(files: list[tuple[str, bytes]]) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as archive:
        for name, content in files:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return data.getvalue()


def make_deb(path: Path, vmlinuz: bytes) -> Path:
    # The control file too: the architecture guard reads it before the kernel is looked at.
    control = tar_of([("./control", b"Package: linux-image-6.1.0-test-amd64\nArchitecture: amd64\n")])
    data = tar_of([("./usr/share/doc/x/copyright", b"c"), ("./boot/vmlinuz-6.1.0-test-amd64", vmlinuz)])
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", lzma.compress(control)),
               ("data.tar.xz", lzma.compress(data))]
    blob = b"!<arch>\n"
    for name, content in members:
        blob += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(content):<10}`\n".encode() + content
        blob += b"\n" if len(content) % 2 else b""
    path.write_bytes(blob)
    return path


def write_profile(folder: Path, vmlinuz: bytes, extra: str = "") -> Path:
    make_deb(folder / "kernel.deb", vmlinuz)
    profile = folder / "mine.toml"
    profile.write_text(f'{extra}[kernel]\ndeb = "kernel.deb"\n')
    return profile


def test_the_kernel_is_found_in_a_deb(tmp_path: Path) -> None:
    found = deb_file(make_deb(tmp_path / "k.deb", b"kernel"), "./boot/vmlinu[xz]-*")
    assert found == ("./boot/vmlinuz-6.1.0-test-amd64", b"kernel")


def test_an_unsigned_kernel_deb_is_refused_in_preflight(tmp_path: Path) -> None:
    profile = load_profile(str(write_profile(tmp_path, pe_image(signed=False))))
    with pytest.raises(InputError) as caught:
        preflight(profile, ("iso",))
    assert caught.value.fault is Fault.INPUT
    message = caught.value.message
    assert "kernel.deb" in message and "no Authenticode signature" in message and str(tmp_path) in message
    assert "secureboot = false" in caught.value.hint


def test_a_kernel_without_an_efi_stub_is_refused_too(tmp_path: Path) -> None:
    profile = load_profile(str(write_profile(tmp_path, b"\x7fELF not a PE")))
    with pytest.raises(InputError, match="no Authenticode signature"):
        preflight(profile, ("iso",))


@pytest.mark.parametrize("switch", ["secureboot = false\n", "[secureboot]\nenabled = false\n"])
def test_secureboot_false_accepts_an_unsigned_kernel(tmp_path: Path, switch: str) -> None:
    profile = load_profile(str(write_profile(tmp_path, pe_image(signed=False), extra=switch)))
    assert profile.secureboot.enabled is False
    preflight(profile, ("iso",))


def test_an_unsigned_kernel_is_accepted_with_an_own_key_uki(tmp_path: Path) -> None:
    """With [secureboot] key and cert, every UEFI path boots a UKI signed whole; the kernel needs no signature."""
    from bootkiln.profile.sbkeys import generate_test_pair

    generate_test_pair(tmp_path)
    own = '[secureboot]\nkey = "secureboot.key"\ncert = "secureboot.crt"\n'
    profile = load_profile(str(write_profile(tmp_path, pe_image(signed=False), extra=own)))
    assert profile.secureboot.own_keys
    preflight(profile, ("iso",))


def test_a_signed_kernel_deb_passes(tmp_path: Path) -> None:
    preflight(load_profile(str(write_profile(tmp_path, pe_image(signed=True)))), ("iso",))


def test_check_profile_exits_2_naming_the_key(tmp_path: Path) -> None:
    """What a user sees: a message and exit status 2, no traceback, no container."""
    profile = write_profile(tmp_path, pe_image(signed=False))
    done = subprocess.run([sys.executable, "-m", "invoke", "check-profile", "--profile", str(profile)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "DOCKER_HOST": "tcp://127.0.0.1:9"})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "kernel.deb" in done.stdout + done.stderr and "Traceback" not in done.stdout + done.stderr
