"""A deterministic cpio (newc) writer, the compressors the kernel can unpack, and a newc reader.

Entries are sorted parents-first, owned by 0:0, stamped with one mtime, and numbered with stable
inode numbers, so the same inputs always give the same bytes. This replaces `find | cpio`, whose
output depends on the build host's inode numbers, directory order and clock.

The reader (`iter_newc`) lists any newc file, also one made elsewhere, for the artifact diff.
"""

from __future__ import annotations

import gzip
import lzma
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

import zstandard

from bootkiln.formats.corrupt import CorruptArtifact

Kind = Literal["dir", "file", "symlink", "chardev", "blockdev"]
Compression = Literal["gzip", "xz", "zstd", "none"]

_TYPE_BITS = {"dir": stat.S_IFDIR, "file": stat.S_IFREG, "symlink": stat.S_IFLNK,
              "chardev": stat.S_IFCHR, "blockdev": stat.S_IFBLK}
TRAILER = "TRAILER!!!"
NEWC_MAGICS = (b"070701", b"070702")  # without and with a checksum in each header
_HEADER_SIZE = 110
_CHUNK = 1 << 20


@dataclass(frozen=True)
class CpioEntry:
    path: str  # relative, no leading slash: "bin/busybox"
    kind: Kind
    mode: int = 0o755  # permission bits only
    data: bytes = b""  # file content, or a symlink's target
    rdev: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if self.path.startswith("/") or not self.path or ".." in self.path.split("/"):
            raise ValueError(f"cpio paths are relative and stay inside the archive: {self.path!r}")
        if self.kind not in ("file", "symlink") and self.data:
            raise ValueError(f"{self.path}: only files and symlinks carry data")


def _sort_key(path: str) -> tuple[str, ...]:
    return tuple(path.split("/"))


def with_parents(entries: Iterable[CpioEntry]) -> list[CpioEntry]:
    """Entries plus any missing parent folders (0755), sorted so a folder precedes its contents."""
    by_path: dict[str, CpioEntry] = {}
    for entry in entries:
        if entry.path in by_path and by_path[entry.path] != entry:
            raise ValueError(f"two different entries for {entry.path!r}")
        by_path[entry.path] = entry
    for path in list(by_path):
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            parent = "/".join(parts[:depth])
            existing = by_path.setdefault(parent, CpioEntry(parent, "dir", 0o755))
            if existing.kind != "dir":
                raise ValueError(f"{parent!r} is a {existing.kind} but {path!r} is inside it")
    return [by_path[path] for path in sorted(by_path, key=_sort_key)]


def _header(fields: list[int], name: bytes) -> bytes:
    return b"070701" + b"".join(b"%08X" % value for value in fields) + name


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def write_newc(entries: Iterable[CpioEntry], mtime: int) -> bytes:
    chunks: list[bytes] = []
    ordered = with_parents(entries)
    for inode, entry in enumerate([*ordered, None], start=1):
        if entry is None:
            name, mode, data, nlink, rdev, inode = TRAILER.encode() + b"\0", 0, b"", 1, (0, 0), 0
            stamp = 0
        else:
            name = entry.path.encode() + b"\0"
            mode = _TYPE_BITS[entry.kind] | (entry.mode & 0o7777)
            data, rdev, stamp = entry.data, entry.rdev, mtime
            nlink = 2 if entry.kind == "dir" else 1
        fields = [inode, mode, 0, 0, nlink, stamp, len(data), 0, 0, rdev[0], rdev[1], len(name), 0]
        header = _header(fields, name)
        chunks += [header, _pad(len(header)), data, _pad(len(data))]
    archive = b"".join(chunks)
    return archive + _pad(len(archive))


def compress(data: bytes, method: Compression, arch: str = "amd64") -> bytes:
    """Compress with fixed headers: no timestamps, no file names, the checks the kernel supports."""
    if method == "gzip":
        return gzip.compress(data, compresslevel=9, mtime=0)
    if method == "xz":
        # The kernel's xz decoder verifies CRC32 only; BCJ x86 shrinks x86 executables. The decoder has
        # only its own architecture's BCJ filter, and Linux 6.1 has none for arm64: plain LZMA2 there.
        bcj: list[dict[str, Any]] = [{"id": lzma.FILTER_X86}] if arch == "amd64" else []
        filters = [*bcj, {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 8 << 20}]
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, filters=filters)
    if method == "zstd":
        return zstandard.ZstdCompressor(level=19, write_checksum=True, write_content_size=True).compress(data)
    return data


@dataclass(frozen=True)
class NewcHeader:
    magic: bytes
    ino: int
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int
    size: int
    dev_major: int
    dev_minor: int
    rdev_major: int
    rdev_minor: int
    check: int  # the data's checksum under magic 070702, else 0


@dataclass(frozen=True)
class CpioMember:
    name: str  # as stored, without the trailing NUL
    archive: int  # which archive of the file holds it, from 0: the kernel unpacks concatenated ones in turn
    offset: int  # of the data
    size: int
    header: NewcHeader | None  # None: bytes after the last archive that start no new one, as one pseudo-member
    link_target: str | None = None  # a symlink's data

    @property
    def mode(self) -> int:
        return self.header.mode if self.header is not None else stat.S_IFREG


def iter_newc(handle: BinaryIO) -> Iterator[CpioMember]:
    """Every member of every newc archive in the file; trailers are not members.

    The handle's position is the reader's between members: a caller that reads a member's data
    seeks to it, and the next member is found all the same.
    """
    archive = 0
    end = handle.seek(0, os.SEEK_END)
    handle.seek(0)
    while True:
        start = handle.tell()
        raw = handle.read(_HEADER_SIZE)
        if len(raw) < _HEADER_SIZE or raw[:6] not in NEWC_MAGICS:
            raise CorruptArtifact(f"no cpio header at byte {start}")
        try:
            values = [int(raw[6 + 8 * index:14 + 8 * index], 16) for index in range(13)]
        except ValueError:
            raise CorruptArtifact(f"cpio header at byte {start} has a non-hex field") from None
        ino, mode, uid, gid, nlink, mtime, size, dev_major, dev_minor, rdev_major, rdev_minor, namesize, check = values
        header = NewcHeader(raw[:6], ino, mode, uid, gid, nlink, mtime, size, dev_major, dev_minor, rdev_major,
                            rdev_minor, check)
        raw_name = handle.read(namesize)
        if len(raw_name) != namesize or not raw_name.endswith(b"\0"):
            raise CorruptArtifact(f"cpio name at byte {start + _HEADER_SIZE} is truncated")
        name = raw_name[:-1].decode("utf-8", "surrogateescape")
        offset = start + _HEADER_SIZE + namesize
        offset += -offset % 4
        if offset + header.size > end:
            raise CorruptArtifact(f"cpio member {name!r} runs past the end of the file")
        if name == TRAILER:
            following = _skip_padding(handle, offset + header.size)
            if following is None:
                return
            handle.seek(following)
            if handle.read(6) not in NEWC_MAGICS:
                yield CpioMember("", archive, following, end - following, None)
                return
            handle.seek(following)
            archive += 1
            continue
        target = None
        if stat.S_ISLNK(header.mode):
            handle.seek(offset)
            target = handle.read(header.size).decode("utf-8", "surrogateescape")
        yield CpioMember(name, archive, offset, header.size, header, target)
        handle.seek(offset + header.size + (-(offset + header.size) % 4))


def _skip_padding(handle: BinaryIO, offset: int) -> int | None:
    """The offset of the first non-zero byte at or after `offset`, or None at the end of the file."""
    handle.seek(offset)
    while block := handle.read(_CHUNK):
        stripped = block.lstrip(b"\0")
        if stripped:
            return offset + len(block) - len(stripped)
        offset += len(block)
    return None
