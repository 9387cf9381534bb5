"""What kind of artifact a file is, from its first bytes: the key to the comparison that reads it."""

from __future__ import annotations

from pathlib import Path

from bootkiln.formats.cpio import NEWC_MAGICS
from bootkiln.formats.fat import is_fat

TEXT_MAX = 4 << 20
COMPRESSED = {b"\x1f\x8b": "gzip", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}


def kind_of(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(0x8800)
    if head[0x8001:0x8006] == b"CD001":
        return "iso9660"  # before FAT/MBR: a hybrid ISO starts with an MBR
    if head[257:262] == b"ustar":
        return "tar"
    if head[:6] in NEWC_MAGICS:
        return "cpio"
    if head[:4] == b"\x7fELF":
        return "elf"
    for magic, kind in COMPRESSED.items():
        if head.startswith(magic):
            return kind
    if is_fat(head):
        return "fat"
    if _is_text(path):
        return "text"
    return "binary"


def _is_text(path: Path) -> bool:
    if path.stat().st_size > TEXT_MAX:
        return False
    data = path.read_bytes()
    if b"\0" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
