"""cpio (newc) archives, concatenated ones included: members by name, their header fields and contents."""

from __future__ import annotations

import stat
from pathlib import Path

from bootkiln.formats.cpio import CpioMember, iter_newc
from bootkiln.verify.diff.binary import copy_stream, sha256_stream
from bootkiln.verify.diff.report import Context, Entry, Extractor, Report, compare_entries, unique

_FILE_TYPES = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFCHR: "char device",
               stat.S_IFBLK: "block device", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}


def _name(member: CpioMember) -> str:
    if member.header is None:
        return "(data after the cpio archive)"
    return member.name if member.archive == 0 else f"[archive {member.archive + 1}] {member.name}"


def _fields(member: CpioMember) -> dict[str, str]:
    header = member.header
    if header is None:
        return {}
    mode = header.mode
    fields = {"type": _FILE_TYPES.get(stat.S_IFMT(mode), f"0o{stat.S_IFMT(mode):o}"),
              "mode": f"{stat.S_IMODE(mode):04o}", "uid": str(header.uid), "gid": str(header.gid),
              "nlink": str(header.nlink), "mtime": str(header.mtime), "size": str(header.size),
              "rdev": f"{header.rdev_major}:{header.rdev_minor}", "dev": f"{header.dev_major}:{header.dev_minor}",
              "ino": str(header.ino)}
    if header.magic == b"070702":
        fields["checksum"] = f"0x{header.check:08x}"
    if member.link_target is not None:
        fields["link target"] = member.link_target
    return fields


def _cpio_entries(path: Path) -> tuple[list[Entry], dict[str, tuple[int, int]]]:
    entries: list[Entry] = []
    where: dict[str, tuple[int, int]] = {}
    seen: dict[str, int] = {}
    with path.open("rb") as handle:
        for member in iter_newc(handle):
            name = unique(_name(member), seen)
            digest = None
            if stat.S_ISREG(member.mode):
                handle.seek(member.offset)
                digest = sha256_stream(handle, member.size)
                where[name] = (member.offset, member.size)
            entries.append(Entry(name, _fields(member), digest, member.size))
    return entries, where


def compare_cpio(label: str, first: Path, second: Path, report: Report, ctx: Context) -> None:
    (entries_one, where_one), (entries_two, where_two) = _cpio_entries(first), _cpio_entries(second)

    def extractor(path: Path, where: dict[str, tuple[int, int]]) -> Extractor:
        def extract(name: str, destination: Path) -> None:
            offset, size = where[name]
            with path.open("rb") as handle:
                handle.seek(offset)
                copy_stream(handle, destination, size)
        return extract

    compare_entries(label, entries_one, entries_two, report, ctx,
                    extract=(extractor(first, where_one), extractor(second, where_two)))
