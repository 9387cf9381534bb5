"""Target architectures bootkiln supports, and readers that tell a file's architecture from its bytes.

A forgotten parameter (an amd64 busybox in an arm64 initramfs, an x86 GRUB on an arm64 ISO) makes an
image that can never boot and says nothing; these readers let each stage check what it consumes and
produces: the ELF machine of binaries and modules, the kernel image type, the PE machine of EFI
binaries and the Architecture field of a Debian package.
"""

from __future__ import annotations

import gzip
import io
import lzma
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from bootkiln.formats.corrupt import CorruptArtifact


@dataclass(frozen=True)
class Arch:
    debian: str          # dpkg's name, as in debian.architecture
    uname: str           # `uname -m` in a booted system
    elf_machine: int     # e_machine of its ELF files
    pe_machine: int      # IMAGE_FILE_HEADER.Machine of its EFI binaries
    kernel_image: str    # what kernel_image_arch() reports for its boot kernel
    efi_boot_name: str   # the removable-media boot path's file name (UEFI spec 3.5.1.1)
    grub_platform: str   # GRUB's platform directory and mkimage format
    gnu_triplet: str     # the cross toolchain prefix
    bios: bool           # whether machines of this architecture boot through a PC BIOS


ARCHES: dict[str, Arch] = {
    "amd64": Arch("amd64", "x86_64", 62, 0x8664, "x86 bzImage", "BOOTX64.EFI", "x86_64-efi",
                  "x86_64-linux-gnu", bios=True),
    "arm64": Arch("arm64", "aarch64", 183, 0xAA64, "arm64 Image", "BOOTAA64.EFI", "arm64-efi",
                  "aarch64-linux-gnu", bios=False),
}
SUPPORTED = tuple(ARCHES)

# What engines (`docker info` Architecture, Go's GOARCH or `uname -m`) call the architectures.
ENGINE_NAMES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
ELF_MACHINES = {arch.elf_machine: name for name, arch in ARCHES.items()} | {3: "i386", 40: "armhf (ARM)",
                                                                            243: "riscv64", 21: "ppc64el"}
PE_MACHINES = {arch.pe_machine: name for name, arch in ARCHES.items()} | {0x14C: "i386", 0x1C2: "armhf (ARM)"}


def debian_arch(engine_name: str) -> str | None:
    """The Debian name of an engine's architecture, or None for one bootkiln does not know."""
    return ENGINE_NAMES.get(engine_name.strip().lower())


def elf_machine(head: bytes) -> int:
    """e_machine of an ELF file, from its first 20 bytes."""
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[5] not in (1, 2):
        raise CorruptArtifact("not an ELF file")
    return int(struct.unpack_from("<H" if head[5] == 1 else ">H", head, 18)[0])


def pe_machine(data: bytes) -> int:
    """The Machine field of a PE/COFF image (an EFI application), from its first few hundred bytes."""
    if len(data) < 0x40 or data[:2] != b"MZ":
        raise CorruptArtifact("not a PE image: no MZ header")
    offset = int.from_bytes(data[0x3C:0x40], "little")
    if data[offset:offset + 4] != b"PE\0\0" or len(data) < offset + 6:
        raise CorruptArtifact("not a PE image: no PE signature where the MZ header points")
    return int.from_bytes(data[offset + 4:offset + 6], "little")


def kernel_image_arch(data: bytes) -> str:
    """What a Linux boot image is: an x86 bzImage (`HdrS` at 0x202) or an arm64 Image (`ARM\\x64` at
    0x38), also gzip-compressed (the Image.gz GRUB and the EFI stub loader accept)."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.GzipFile(fileobj=io.BytesIO(data)).read(0x1000)
        except (OSError, EOFError, zlib.error) as exc:
            raise CorruptArtifact(f"a gzip-compressed kernel that does not decompress: {exc}") from None
    if data[0x202:0x206] == b"HdrS":
        return ARCHES["amd64"].kernel_image
    if data[0x38:0x3C] == b"ARM\x64":
        return ARCHES["arm64"].kernel_image
    return "unknown"


def deb_field(path: Path, field: str) -> str | None:
    """One field of a Debian package's control file, read from the .deb's ar archive (no dpkg needed)."""
    with path.open("rb") as handle:
        if handle.read(8) != b"!<arch>\n":
            raise CorruptArtifact("not a Debian package: no ar archive header")
        while header := handle.read(60):
            if len(header) < 60:
                break
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip() or 0)
            member = handle.read(size)
            handle.read(size % 2)  # ar members are 2-aligned
            if name.startswith("control.tar"):
                return _control_field(name, member, field)
    raise CorruptArtifact("not a Debian package: no control.tar member")


def _control_field(name: str, member: bytes, field: str) -> str | None:
    if name.endswith(".xz"):
        member = lzma.decompress(member)
    elif name.endswith(".gz"):
        member = gzip.decompress(member)
    elif name != "control.tar":
        raise CorruptArtifact(f"{name}: a compression bootkiln cannot read (xz, gzip or none)")
    with tarfile.open(fileobj=io.BytesIO(member)) as archive:
        for info in archive.getmembers():
            if info.name.lstrip("./") == "control" and (extracted := archive.extractfile(info)) is not None:
                for line in extracted.read().decode("utf-8", "replace").splitlines():
                    key, _, value = line.partition(":")
                    if key == field:
                        return value.strip()
                return None
    raise CorruptArtifact("the package's control archive has no control file")
