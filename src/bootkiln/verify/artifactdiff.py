"""Where two builds of one artifact differ: the structural diff behind `invoke verify-reproducible`.

diffoscope would need the builder container and a few hundred MB of tools, and the artifacts
bootkiln makes are few and simple, so they are read natively here: tar and cpio members, compressed
streams, ISO 9660 volume descriptors, directory records, El Torito and the hybrid MBR/GPT, FAT boot
sectors and directory entries, ELF sections. When a member's bytes differ it is compared in turn
(the initramfs inside the ISO, the files inside the initramfs), so the report ends at the smallest
thing that differs. Anything unrecognised, or too damaged to parse, is compared as byte ranges,
read in chunks so that two 170 MB tarballs never sit in memory together.
"""

from __future__ import annotations

import contextlib
import difflib
import gzip
import hashlib
import lzma
import os
import posixpath
import re
import stat
import struct
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

import pycdlib
import zstandard
from pycdlib.pycdlibexception import PyCdlibException

CHUNK = 1 << 20
MERGE_GAP = 16  # differing bytes at most this far apart are reported as one range
MAX_DEPTH = 4  # artifact -> decompressed -> member -> member's member
NESTED_MAX = 512 << 20  # members larger than this are not extracted for a nested comparison
TEXT_MAX = 4 << 20
DIFF_LINES = 40
STRINGS_MIN = 8
STRINGS_SHOWN = 10
STRINGS_MAX_FILE = 64 << 20
DIGEST_SHOWN = 12

# A run of differing bytes in an XOR of two blocks, swallowing equal gaps of up to MERGE_GAP bytes.
_RUN = re.compile(rb"[^\x00]+(?:\x00{1,%d}[^\x00]+)*" % MERGE_GAP)
_PRINTABLE = re.compile(rb"[\x20-\x7e\t]{%d,}" % STRINGS_MIN)
_COMPRESSED = {b"\x1f\x8b": "gzip", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
_CPIO_MAGICS = (b"070701", b"070702")


@dataclass(frozen=True)
class Difference:
    where: str  # "rootfs.tar: ./etc/machine-id", "boot.iso: /boot/initrd.img: init"
    what: str  # "mtime 1700000000 vs 1700000060", "only in first build"


class CorruptArtifact(ValueError):
    """An artifact has the magic of a format but breaks its rules (truncated, offsets out of range)."""


# What a damaged or hostile input can raise while being parsed; each sends that artifact to the
# byte comparison instead of aborting the whole report.
_PARSE_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, IndexError, KeyError, EOFError, OSError, struct.error, tarfile.TarError, lzma.LZMAError,
    zstandard.ZstdError, PyCdlibException, RecursionError,
)


def compare_artifacts(name: str, first: Path, second: Path, *, limit: int = 50) -> list[Difference]:
    """Up to `limit` differences between two builds of the artifact `name`, [] if byte-identical.

    When more were found, one last Difference counts the ones left out.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if _same_bytes(first, second):
        return []
    report = _Report(limit)
    with tempfile.TemporaryDirectory(prefix="bootkiln-diff-") as scratch:
        _compare(name, first, second, report, _Context(Path(scratch)))
    if report.hidden:
        return [*report.shown, Difference("…", f"{report.hidden} more differences not shown")]
    return report.shown


def describe(differences: list[Difference]) -> str:
    """One line per difference for the terminal; control characters are escaped, never sent."""
    return "\n".join(f"  {_printable(item.where)}: {_printable(item.what)}" for item in differences)


def _printable(text: str) -> str:
    # Names and text lines come from the artifacts: an escape sequence in one must not reach the terminal.
    return "".join(char if char.isprintable() or char == "\t" else repr(char)[1:-1] for char in text)


class _Report:
    """Collects differences: the first `limit` are kept, the rest only counted."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.shown: list[Difference] = []
        self.hidden = 0

    @property
    def room(self) -> int:
        return self.limit - len(self.shown)

    @property
    def count(self) -> int:
        return len(self.shown) + self.hidden

    def add(self, where: str, what: str) -> None:
        if len(self.shown) < self.limit:
            self.shown.append(Difference(where, what))
        else:
            self.hidden += 1

    def skip(self, count: int) -> None:
        self.hidden += count


@dataclass(frozen=True)
class _Context:
    scratch: Path
    depth: int = 0

    def deeper(self) -> _Context:
        return _Context(self.scratch, self.depth + 1)

    def may_descend(self, report: _Report, size: int) -> bool:
        # Nested detail is only worth extracting while it can still be shown.
        return self.depth < MAX_DEPTH and report.room > 0 and size <= NESTED_MAX

    @contextlib.contextmanager
    def pair(self) -> Iterator[tuple[Path, Path]]:
        paths: list[Path] = []
        try:
            for _ in range(2):
                handle, name = tempfile.mkstemp(dir=self.scratch)
                os.close(handle)
                paths.append(Path(name))
            yield paths[0], paths[1]
        finally:
            for path in paths:
                path.unlink(missing_ok=True)


Comparer = Callable[[str, Path, Path, _Report, _Context], None]


def _compare(label: str, first: Path, second: Path, report: _Report, ctx: _Context) -> None:
    kinds = _kind(first), _kind(second)
    if kinds[0] != kinds[1]:
        report.add(label, f"kind {kinds[0]} vs {kinds[1]}")
        _compare_bytes(label, first, second, report, ctx)
        return
    kind = kinds[0]
    before = report.count
    try:
        _COMPARERS[kind](label, first, second, report, ctx)
    except _PARSE_ERRORS as exc:
        report.add(label, f"structural {kind} comparison failed ({type(exc).__name__}: {exc}); comparing raw bytes")
        _compare_bytes(label, first, second, report, ctx)
        return
    if report.count == before:
        # Some field this module does not read differs (padding, an unparsed table): show where.
        report.add(label, f"no {kind} structure differs, but the bytes do")
        _compare_bytes(label, first, second, report, ctx)


def _kind(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(0x8800)
    if head[0x8001:0x8006] == b"CD001":
        return "iso9660"  # before FAT/MBR: a hybrid ISO starts with an MBR
    if head[257:262] == b"ustar":
        return "tar"
    if head[:6] in _CPIO_MAGICS:
        return "cpio"
    if head[:4] == b"\x7fELF":
        return "elf"
    for magic, kind in _COMPRESSED.items():
        if head.startswith(magic):
            return kind
    if _is_fat(head):
        return "fat"
    if _is_text(path):
        return "text"
    return "binary"


def _is_fat(head: bytes) -> bool:
    if len(head) < 512 or head[510:512] != b"\x55\xaa":
        return False
    return head[0x36:0x3E] in (b"FAT12   ", b"FAT16   ", b"FAT     ") or head[0x52:0x5A] == b"FAT32   "


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


# ---------------------------------------------------------------------------------------- bytes


def _same_bytes(first: Path, second: Path) -> bool:
    if first.stat().st_size != second.stat().st_size:
        return False
    with first.open("rb") as one, second.open("rb") as two:
        while True:
            block = one.read(CHUNK)
            if block != two.read(CHUNK):
                return False
            if not block:
                return True


def _sha256_stream(stream: IO[bytes] | BinaryIO, size: int | None = None) -> str:
    digest = hashlib.sha256()
    remaining = size
    while remaining is None or remaining > 0:
        block = stream.read(CHUNK if remaining is None else min(CHUNK, remaining))
        if not block:
            if remaining:
                raise CorruptArtifact(f"data ends {remaining} bytes early")
            break
        digest.update(block)
        if remaining is not None:
            remaining -= len(block)
    return digest.hexdigest()


def _copy_stream(stream: IO[bytes] | BinaryIO, destination: Path, size: int | None = None) -> None:
    remaining = size
    with destination.open("wb") as out:
        while remaining is None or remaining > 0:
            block = stream.read(CHUNK if remaining is None else min(CHUNK, remaining))
            if not block:
                break
            out.write(block)
            if remaining is not None:
                remaining -= len(block)


def _short(digest: str | None) -> str:
    return "none" if digest is None else digest[:DIGEST_SHOWN] + "…"


def _runs(one: bytes, two: bytes, base: int = 0) -> tuple[int, list[tuple[int, int]]]:
    """How many bytes of two equally long blocks differ, and the [start, end) ranges (gaps up to MERGE_GAP merged)."""
    if one == two:
        return 0, []
    # XOR as big integers runs in C; counting zeros and the regex that finds non-zero runs do too.
    xor = (int.from_bytes(one, "big") ^ int.from_bytes(two, "big")).to_bytes(len(one), "big")
    return len(xor) - xor.count(0), [(base + match.start(), base + match.end()) for match in _RUN.finditer(xor)]


def _merged(ranges: Iterator[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Merge ranges (in order) closer than MERGE_GAP: the regex cannot see across block borders."""
    current: tuple[int, int] | None = None
    for start, end in ranges:
        if current is not None and start - current[1] <= MERGE_GAP:
            current = (current[0], end)
            continue
        if current is not None:
            yield current
        current = (start, end)
    if current is not None:
        yield current


def _span(start: int, end: int) -> str:
    return f"byte 0x{start:x} differs" if end - start == 1 else f"bytes 0x{start:x}-0x{end - 1:x} differ"


def _compare_bytes(label: str, first: Path, second: Path, report: _Report, ctx: _Context) -> None:
    sizes = first.stat().st_size, second.stat().st_size
    common = min(sizes)
    if sizes[0] != sizes[1]:
        report.add(label, f"size {sizes[0]} vs {sizes[1]} bytes ({sizes[1] - sizes[0]:+d})")
        which = "first" if sizes[0] > sizes[1] else "second"
        report.add(label, f"bytes 0x{common:x}-0x{max(sizes) - 1:x} only in the {which} build")
    keep = max(report.room - 1, 0)  # one line goes to the totals
    kept: list[tuple[int, int]] = []
    total_ranges = 0
    differing = 0

    def block_runs() -> Iterator[tuple[int, int]]:
        nonlocal differing
        offset = 0
        with first.open("rb") as one, second.open("rb") as two:
            while offset < common:
                size = min(CHUNK, common - offset)
                block_one, block_two = one.read(size), two.read(size)
                if len(block_one) != size or len(block_two) != size:
                    raise OSError(f"{label}: a file changed size while being compared")
                count, runs = _runs(block_one, block_two, offset)
                differing += count
                yield from runs
                offset += size

    for span in _merged(block_runs()):
        total_ranges += 1
        if len(kept) < keep:
            kept.append(span)
    if total_ranges:
        report.add(label, f"{differing} of {common} bytes differ, in {total_ranges} "
                          f"range{'s' if total_ranges != 1 else ''}")
    for start, end in kept:
        report.add(label, _span(start, end))
    report.skip(total_ranges - len(kept))


# ---------------------------------------------------------------------------------------- members


@dataclass(frozen=True)
class _Entry:
    """One member of a container: its metadata as display strings, and its content's sha256."""

    name: str
    fields: dict[str, str] = field(default_factory=dict)
    digest: str | None = None
    size: int = 0


Extractor = Callable[[str, Path], None]  # writes the named member's content to a path


def _unique(name: str, seen: dict[str, int]) -> str:
    # Archives may hold a name twice (the later one wins on extraction); keep both apart.
    seen[name] = seen.get(name, 0) + 1
    return name if seen[name] == 1 else f"{name} (copy {seen[name]})"


def _compare_fields(where: str, one: Mapping[str, str], two: Mapping[str, str], report: _Report) -> None:
    # Fields that differ the same way (one clock read stamped into four dates) share a line.
    changes: dict[tuple[str, str], list[str]] = {}
    for key in [*one, *(key for key in two if key not in one)]:
        value_one, value_two = one.get(key, "(absent)"), two.get(key, "(absent)")
        if value_one != value_two:
            changes.setdefault((value_one, value_two), []).append(key)
    for (value_one, value_two), keys in changes.items():
        report.add(where, f"{', '.join(keys)} {value_one} vs {value_two}")


def _compare_entries(label: str, first: list[_Entry], second: list[_Entry], report: _Report, ctx: _Context, *,
                     prefix: str = "", extract: tuple[Extractor, Extractor] | None = None,
                     hint: Callable[[str], str] | None = None) -> None:
    """Members only on one side, their differing fields and contents (opened in turn), then their order."""
    by_name = {entry.name: entry for entry in second}
    first_names = {entry.name for entry in first}
    for entry in first:
        where = f"{label}: {prefix}{entry.name}"
        other = by_name.get(entry.name)
        if other is None:
            report.add(where, "only in first build")
            continue
        _compare_fields(where, entry.fields, other.fields, report)
        if entry.digest is not None and other.digest is not None and entry.digest != other.digest:
            note = hint(entry.name) if hint else ""
            report.add(where, f"content differs (sha256 {_short(entry.digest)} vs {_short(other.digest)}){note}")
            if extract and ctx.may_descend(report, max(entry.size, other.size)):
                with ctx.pair() as (path_one, path_two):
                    extract[0](entry.name, path_one)
                    extract[1](other.name, path_two)
                    _compare(where, path_one, path_two, report, ctx.deeper())
    for entry in second:
        if entry.name not in first_names:
            report.add(f"{label}: {prefix}{entry.name}", "only in second build")
    common = set(by_name) & first_names
    order_one = [entry.name for entry in first if entry.name in common]
    order_two = [entry.name for entry in second if entry.name in common]
    for index, (name_one, name_two) in enumerate(zip(order_one, order_two, strict=True)):
        if name_one != name_two:
            report.add(f"{label}: {prefix.strip() or 'member'} order",
                       f"differs from position {index}: {name_one} vs {name_two}")
            break


# ---------------------------------------------------------------------------------------- compressed


def _compare_compressed(label: str, first: Path, second: Path, report: _Report, ctx: _Context) -> None:
    kind = _kind(first)
    if ctx.depth > MAX_DEPTH:  # compressed inside compressed inside...: stop unpacking
        _compare_bytes(label, first, second, report, ctx)
        return
    header_one, header_two = _stream_header(kind, first), _stream_header(kind, second)
    with ctx.pair() as (plain_one, plain_two):
        digest_one, digest_two = _decompress(kind, first, plain_one), _decompress(kind, second, plain_two)
        if digest_one == digest_two:
            report.add(label, "compressed streams differ, contents identical: the compressor is not deterministic")
            _compare_fields(f"{label}: {kind} header", header_one, header_two, report)
            sizes = first.stat().st_size, second.stat().st_size
            if sizes[0] != sizes[1]:
                report.add(label, f"compressed size {sizes[0]} vs {sizes[1]} bytes")
            return
        _compare_fields(f"{label}: {kind} header", header_one, header_two, report)
        # The decompressed artifact keeps the name: "initrd.img: init" reads better than a layer name.
        _compare(label, plain_one, plain_two, report, ctx.deeper())


def _decompress(kind: str, source: Path, destination: Path) -> str:
    digest = hashlib.sha256()
    with source.open("rb") as raw, _decompressor(kind, raw) as stream, destination.open("wb") as out:
        for block in iter(lambda: stream.read(CHUNK), b""):
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


class _Reader(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


@contextlib.contextmanager
def _decompressor(kind: str, raw: BinaryIO) -> Iterator[_Reader]:
    if kind == "gzip":
        with gzip.GzipFile(fileobj=raw, mode="rb") as gzip_stream:
            yield gzip_stream
    elif kind == "xz":
        with lzma.LZMAFile(raw, "rb") as xz_stream:
            yield xz_stream
    else:
        with zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as zstd_stream:
            yield zstd_stream


def _stream_header(kind: str, path: Path) -> dict[str, str]:
    """The header fields a compressor may vary between runs (time stamps, OS, checks, flags)."""
    with path.open("rb") as handle:
        head = handle.read(1024)
    if kind == "gzip" and len(head) >= 10:
        fields = {"flags": f"0x{head[3]:02x}", "mtime": str(int.from_bytes(head[4:8], "little")),
                  "extra flags": f"0x{head[8]:02x}", "OS": str(head[9])}
        if head[3] & 0x08 and not head[3] & 0x04:  # a file name and no extra field before it
            fields["file name"] = repr(head[10:].split(b"\0", 1)[0].decode("latin-1"))
        return fields
    if kind == "xz" and len(head) >= 8:
        return {"check": {0: "none", 1: "CRC32", 4: "CRC64", 10: "SHA-256"}.get(head[7] & 0x0F, str(head[7]))}
    if kind == "zstd" and len(head) >= 5:
        return {"frame header descriptor": f"0x{head[4]:02x}"}
    return {}


# ---------------------------------------------------------------------------------------- tar

_TAR_TYPES = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.LNKTYPE: "hard link",
              tarfile.SYMTYPE: "symlink", tarfile.CHRTYPE: "char device", tarfile.BLKTYPE: "block device",
              tarfile.DIRTYPE: "dir", tarfile.FIFOTYPE: "fifo", tarfile.CONTTYPE: "contiguous file"}
# pax keys whose values tarfile already folds into the member's own fields.
_PAX_FOLDED = {"path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime"}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _tar_entries(archive: tarfile.TarFile) -> tuple[list[_Entry], dict[str, tarfile.TarInfo]]:
    entries: list[_Entry] = []
    members: dict[str, tarfile.TarInfo] = {}
    seen: dict[str, int] = {}
    for member in archive:
        name = _unique(member.name, seen)
        fields = {"type": _TAR_TYPES.get(member.type, member.type.decode("latin-1")), "mode": f"{member.mode:04o}",
                  "uid": str(member.uid), "gid": str(member.gid), "uname": repr(member.uname),
                  "gname": repr(member.gname), "mtime": _number(member.mtime), "size": str(member.size)}
        if member.issym() or member.islnk():
            fields["link target"] = member.linkname
        if member.ischr() or member.isblk():
            fields["device"] = f"{member.devmajor}:{member.devminor}"
        for key, value in sorted(member.pax_headers.items()):
            if key not in _PAX_FOLDED:
                fields[f"pax header {key}"] = repr(value)
        digest = None
        if member.isreg():
            stream = archive.extractfile(member)
            assert stream is not None  # a regular member always has a stream
            digest = _sha256_stream(stream, member.size)
        entries.append(_Entry(name, fields, digest, member.size))
        members[name] = member
    return entries, members


def _compare_tar(label: str, first: Path, second: Path, report: _Report, ctx: _Context) -> None:
    with tarfile.open(first, mode="r:") as one, tarfile.open(second, mode="r:") as two:
        entries_one, members_one = _tar_entries(one)
        entries_two, members_two = _tar_entries(two)
        _compare_fields(f"{label}: global pax header", one.pax_headers, two.pax_headers, report)

        def extractor(archive: tarfile.TarFile, members: dict[str, tarfile.TarInfo]) -> Extractor:
            def extract(name: str, destination: Path) -> None:
                stream = archive.extractfile(members[name])
                assert stream is not None
                _copy_stream(stream, destination)
            return extract

        _compare_entries(label, entries_one, entries_two, report, ctx,
                         extract=(extractor(one, members_one), extractor(two, members_two)))


# ---------------------------------------------------------------------------------------- cpio

_FILE_TYPES = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFCHR: "char device",
               stat.S_IFBLK: "block device", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}


@dataclass(frozen=True)
class _CpioMember:
    name: str
    fields: dict[str, str]
    mode: int
    offset: int  # of the data
    size: int


def _iter_cpio(handle: BinaryIO) -> Iterator[_CpioMember]:
    """Every member of every archive in the file (the kernel unpacks concatenated archives too)."""
    archive = 0
    end = handle.seek(0, os.SEEK_END)
    handle.seek(0)
    while True:
        start = handle.tell()
        header = handle.read(110)
        if len(header) < 110 or header[:6] not in _CPIO_MAGICS:
            raise CorruptArtifact(f"no cpio header at byte {start}")
        try:
            values = [int(header[6 + 8 * index:14 + 8 * index], 16) for index in range(13)]
        except ValueError:
            raise CorruptArtifact(f"cpio header at byte {start} has a non-hex field") from None
        ino, mode, uid, gid, nlink, mtime, size, dev_major, dev_minor, rdev_major, rdev_minor, namesize, check = values
        raw_name = handle.read(namesize)
        if len(raw_name) != namesize or not raw_name.endswith(b"\0"):
            raise CorruptArtifact(f"cpio name at byte {start + 110} is truncated")
        name = raw_name[:-1].decode("utf-8", "surrogateescape")
        offset = start + 110 + namesize
        offset += -offset % 4
        if offset + size > end:
            raise CorruptArtifact(f"cpio member {name!r} runs past the end of the file")
        if name == "TRAILER!!!":
            following = _skip_padding(handle, offset + size)
            if following is None:
                return
            handle.seek(following)
            if handle.read(6) not in _CPIO_MAGICS:
                yield _CpioMember("(data after the cpio archive)", {}, stat.S_IFREG, following, end - following)
                return
            handle.seek(following)
            archive += 1
            continue
        fields = {"type": _FILE_TYPES.get(stat.S_IFMT(mode), f"0o{stat.S_IFMT(mode):o}"),
                  "mode": f"{stat.S_IMODE(mode):04o}", "uid": str(uid), "gid": str(gid), "nlink": str(nlink),
                  "mtime": str(mtime), "size": str(size), "rdev": f"{rdev_major}:{rdev_minor}",
                  "dev": f"{dev_major}:{dev_minor}", "ino": str(ino)}
        if header[:6] == b"070702":
            fields["checksum"] = f"0x{check:08x}"
        if stat.S_ISLNK(mode):
            handle.seek(offset)
            fields["link target"] = handle.read(size).decode("utf-8", "surrogateescape")
        yield _CpioMember(name if archive == 0 else f"[archive {archive + 1}] {name}", fields, mode, offset, size)
        handle.seek(offset + size + (-(offset + size) % 4))


def _skip_padding(handle: BinaryIO, offset: int) -> int | None:
    """The offset of the first non-zero byte at or after `offset`, or None at the end of the file."""
    handle.seek(offset)
    while block := handle.read(CHUNK):
        stripped = block.lstrip(b"\0")
        if stripped:
            return offset + len(block) - len(stripped)
        offset += len(block)
    return None


def _cpio_entries(path: Path) -> tuple[list[_Entry], dict[str, tuple[int, int]]]:
    entries: list[_Entry] = []
    where: dict[str, tuple[int, int]] = {}
    seen: dict[str, int] = {}
    with path.open("rb") as handle:
        for member in _iter_cpio(handle):
            name = _unique(member.name, seen)
            digest = None
            if stat.S_ISREG(member.mode):
                handle.seek(member.offset)
                digest = _sha256_stream(handle, member.size)
                where[name] = (member.offset, member.size)
            entries.append(_Entry(name, member.fields, digest, member.size))
    return entries, where


def _compare_cpio(label: str, first: Path, second: Path, report: _Report, ctx: _Context) -> None:
    (entries_one, where_one), (entries_two, where_two) = _cpio_entries(first), _cpio_entries(second)

    def extractor(path: Path, where: dict[str, tuple[int, int]]) -> Extractor:
        def extract(name: str, destination: Path) -> None:
            offset, size = where[name]
            with path.open("rb") as handle:
                handle.seek(offset)
                _copy_stream(handle, destination, size)
        return extract

    _compare_entries(label, entries_one, entries_two, report, ctx,
                     extract=(extractor(first, where_one), extractor(second, where_two)))


# ---------------------------------------------------------------------------------------- ISO 9660

_MBR_REGIONS = [(0x000, 0x1B0, "boot code"), (0x1B0, 0x1B8, "isohybrid boot file address"),
                (0x1B8, 0x1BC, "disk signature"), (0x1BC, 0x1BE, "reserved"),
                *((0x1BE + 16 * index, 0x1CE + 16 * index, f"partition entry {index + 1}") for index in range(4)),
                (0x1FE, 0x200, "boot signature")]
SYSTEM_AREA = 32 * 1024


def _guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=raw))


def _vd_date(date: Any) -> str:
    if not date.year:
        return "unset"
    return (f"{date.year:04d}-{date.month:02d}-{date.dayofmonth:02d} {date.hour:02d}:{date.minute:02d}:"
            f"{date.second:02d}.{date.hundredthsofsecond:02d} {_gmtoffset(date.gmtoffset)}")


def _dr_date(date: Any) -> str:
    return (f"{1900 + date.years_since_1900:04d}-{date.month:02d}-{date.day_of_month:02d} {date.hour:02d}:"
            f"{date.minute:02d}:{date.second:02d} {_gmtoffset(date.gmtoffset)}")


def _gmtoffset(quarters: int) -> str:
    # ISO 9660 stores the zone in signed 15-minute steps.
    minutes = quarters * 15
    return f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _text(raw: Any, encoding: str) -> str:
    if isinstance(raw, bytes):
        return repr(raw.decode(encoding, "replace").rstrip(" \0"))
    return repr(raw)


def _vd_fields(vd: Any) -> dict[str, str]:
    encoding = getattr(vd, "encoding", "ascii")
    fields = {label: _text(getattr(vd, attribute, b""), encoding) for label, attribute in (
        ("system id", "system_identifier"), ("volume id", "volume_identifier"),
        ("volume set id", "volume_set_identifier"), ("copyright file", "copyright_file_identifier"),
        ("abstract file", "abstract_file_identifier"), ("bibliographic file", "bibliographic_file_identifier"))}
    for label, attribute in (("publisher id", "publisher_identifier"), ("preparer id", "preparer_identifier"),
                             ("application id", "application_identifier")):
        fields[label] = _text(getattr(getattr(vd, attribute, None), "text", b""), encoding)
    for label, attribute in (("volume space size", "space_size"), ("path table size", "path_tbl_size"),
                             ("logical block size", "log_block_size")):
        fields[label] = str(getattr(vd, attribute, "?"))
    for label, attribute in (("volume creation date", "volume_creation_date"),
                             ("volume modification date", "volume_modification_date"),
                             ("volume expiration date", "volume_expiration_date"),
                             ("volume effective date", "volume_effective_date")):
        fields[label] = _vd_date(getattr(vd, attribute))
    return fields


def _eltorito_entries(iso: Any, extents: dict[int, str]) -> list[_Entry]:
    """The boot catalog's validation entry, initial entry, section headers and section entries."""
    catalog = iso.eltorito_boot_catalog
    if catalog is None:
        return []
    validation = catalog.validation_entry
    entries = [_Entry("validation entry", {"platform id": f"0x{validation.platform_id:02x}",
                                           "id string": repr(validation.id_string.rstrip(b"\0"))})]
    boot_entries = [("initial entry", catalog.initial_entry)]
    for number, section in enumerate(catalog.sections, start=1):
        entries.append(_Entry(f"section {number}", {"platform id": f"0x{section.platform_id:02x}",
                                                    "entries": str(len(section.section_entries)),
                                                    "id string": repr(section.id_string.rstrip(b"\0"))}))
        boot_entries += [(f"section {number} entry {index}", entry)
                         for index, entry in enumerate(section.section_entries, start=1)]
    for name, entry in boot_entries:
        entries.append(_Entry(name, {
            "bootable": str(entry.boot_indicator == 0x88), "media type": str(entry.boot_media_type),
            "load segment": f"0x{entry.load_segment:04x}", "system type": str(entry.system_type),
            "load size (sectors)": str(entry.sector_count),
            "boot image extent": f"{entry.load_rba} ({extents.get(entry.load_rba, 'no file')})"}))
    return entries


def _rr_fields(record: Any) -> dict[str, str]:
    rock_ridge = record.rock_ridge
    if rock_ridge is None:
        return {}
    fields: dict[str, str] = {}
    for entries in (rock_ridge.dr_entries, rock_ridge.ce_entries):
        px_record = getattr(entries, "px_record", None)
        if px_record is not None:
            fields.update({"Rock Ridge mode": f"0o{px_record.posix_file_mode:o}",
                           "Rock Ridge uid": str(px_record.posix_user_id),
                           "Rock Ridge gid": str(px_record.posix_group_id),
                           "Rock Ridge links": str(px_record.posix_file_links)})
        tf_record = getattr(entries, "tf_record", None)
        if tf_record is not None:
            for name in ("creation", "access", "modification", "attribute_change", "backup", "expiration",
                         "effective"):
                value = getattr(tf_record, f"{name}_time", None)
                if value is not None:
                    shown = _vd_date(value) if hasattr(value, "dayofmonth") else _dr_date(value)
                    fields[f"Rock Ridge {name.replace('_', ' ')} time"] = shown
    if rock_ridge.is_symlink():
        fields["symlink target"] = rock_ridge.symlink_path().decode("utf-8", "replace")
    return fields


def _iso_entries(iso: Any, tree: str, *, contents: bool = True) -> tuple[list[_Entry], dict[str, int]]:
    """Every directory record of one tree ("rr_path", "joliet_path" or "iso_path"), and its extents."""
    entries: list[_Entry] = []
    extents: dict[str, int] = {}
    encoding = "utf-16_be" if tree == "joliet_path" else "utf-8"
    for folder, dirs, files in iso.walk(**{tree: "/"}):
        names = [folder] if folder == "/" else []
        names += [posixpath.join(folder, name) for name in [*dirs, *files]]
        for path in names:
            record = iso.get_record(**{tree: path})
            is_dir = record.is_dir()
            fields = {"type": "dir" if is_dir else "file", "size": str(record.data_length),
                      "date": _dr_date(record.date), "flags": f"0x{record.file_flags:02x}"}
            if tree != "iso_path" and path != "/":
                fields["ISO 9660 name"] = repr(record.file_identifier().decode(encoding, "replace"))
            if tree == "rr_path":
                fields.update(_rr_fields(record))
            digest = None
            if contents and not is_dir and "symlink target" not in fields:
                if record.inode is None or record.data_length == 0:
                    digest = hashlib.sha256().hexdigest()
                else:
                    with iso.open_file_from_iso(**{tree: path}) as stream:
                        digest = _sha256_stream(stream)
            extents[path] = record.extent_location()
            entries.append(_Entry(path, fields, digest, record.data_length))
    return entries, extents


def _compare_iso(label: str, first: Path, second: Path, report: _Report, ctx: _Context) -> None:
    with contextlib.ExitStack() as stack:
        isos = []
        for path in (first, second):
            iso = pycdlib.PyCdlib()
            iso.open(str(path))
            stack.callback(iso.close)
            isos.append(iso)
        one, two = isos
        _compare_fields(f"{label}: primary volume descriptor", _vd_fields(one.pvd), _vd_fields(two.pvd), report)
        if one.joliet_vd is not None and two.joliet_vd is not None:
            _compare_fields(f"{label}: Joliet volume descriptor", _vd_fields(one.joliet_vd),
                            _vd_fields(two.joliet_vd), report)
        trees = ["rr_path" if iso.has_rock_ridge() else "iso_path" for iso in isos]
        if trees[0] != trees[1]:
            report.add(label, f"Rock Ridge {'present' if trees[0] == 'rr_path' else 'absent'} vs "
                              f"{'present' if trees[1] == 'rr_path' else 'absent'}")
            trees = ["iso_path", "iso_path"]
        entries_one, extents_one = _iso_entries(one, trees[0])
        entries_two, extents_two = _iso_entries(two, trees[1])
        _compare_entries(label, _eltorito_entries(one, {extent: path for path, extent in extents_one.items()}),
                         _eltorito_entries(two, {extent: path for path, extent in extents_two.items()}), report, ctx,
                         prefix="El Torito ")
        _compare_system_area(label, first, second, report)

        def extractor(iso: Any, tree: str) -> Extractor:
            def extract(name: str, destination: Path) -> None:
                with iso.open_file_from_iso(**{tree: name}) as stream:
                    _copy_stream(stream, destination)
            return extract

        _compare_entries(label, entries_one, entries_two, report, ctx,
                         extract=(extractor(one, trees[0]), extractor(two, trees[1])))
        moved = [(path, extent, extents_two[path]) for path, extent in extents_one.items()
                 if path in extents_two and extents_two[path] != extent]
        if moved:
            moved_path, extent_one, extent_two = moved[0]
            report.add(f"{label}: directory records", f"{len(moved)} extents moved (first: {moved_path} at sector "
                                                      f"{extent_one} vs {extent_two})")
        if trees[0] == "rr_path" and one.has_joliet() and two.has_joliet():
            # Joliet records share their data with the Rock Ridge ones: only names and records here.
            joliet_one, _ = _iso_entries(one, "joliet_path", contents=False)
            joliet_two, _ = _iso_entries(two, "joliet_path", contents=False)
            _compare_entries(label, joliet_one, joliet_two, report, ctx, prefix="Joliet ")


def _region_names(start: int, end: int) -> str:
    return ", ".join(name for low, high, name in _MBR_REGIONS if low < end and start < high)


def _compare_system_area(label: str, first: Path, second: Path, report: _Report) -> None:
    with first.open("rb") as handle_one, second.open("rb") as handle_two:
        area_one, area_two = handle_one.read(SYSTEM_AREA), handle_two.read(SYSTEM_AREA)
        if area_one == area_two:
            return
        where = f"{label}: system area"
        for start, end in _runs(area_one[:512], area_two[:512])[1]:
            at = f"byte differs at 0x{start:x}" if end - start == 1 else f"bytes differ at 0x{start:x}-0x{end - 1:x}"
            report.add(where, f"MBR {at} ({_region_names(start, end)})")
        covered = [(0, 512)]
        if area_one[512:520] == b"EFI PART" and area_two[512:520] == b"EFI PART":
            backups = _compare_gpt(label, "GPT", (handle_one, handle_two), (512, 512), report, covered)
            if backups is not None:
                _compare_gpt(label, "backup GPT", (handle_one, handle_two), backups, report, None)
        for start, end in _runs(area_one[512:], area_two[512:], 512)[1]:
            if not any(low <= start and end <= high for low, high in covered):
                report.add(where, f"{_span(start, end)} (outside the MBR and GPT)")


def _gpt(handle: BinaryIO, offset: int) -> tuple[dict[str, str], list[dict[str, str]], int, tuple[int, int]]:
    """A GPT header's fields, its partition entries, its backup's byte offset and where its entries lie."""
    handle.seek(offset)
    header = handle.read(512)
    if header[:8] != b"EFI PART" or len(header) < 92:
        raise CorruptArtifact(f"no GPT header at byte {offset}")
    backup_lba, first_usable, last_usable = struct.unpack_from("<QQQ", header, 32)
    entries_lba, count, entry_size, entries_crc = struct.unpack_from("<QIII", header, 72)
    if not 128 <= entry_size <= 4096 or count > 4096:
        raise CorruptArtifact(f"GPT at byte {offset} declares {count} entries of {entry_size} bytes")
    fields = {"disk GUID": _guid(header[56:72]), "header CRC": f"0x{int.from_bytes(header[16:20], 'little'):08x}",
              "entries CRC": f"0x{entries_crc:08x}", "backup LBA": str(backup_lba),
              "usable LBAs": f"{first_usable}-{last_usable}",
              "entries": f"{count} x {entry_size} bytes at LBA {entries_lba}"}
    handle.seek(entries_lba * 512)
    table = handle.read(count * entry_size)
    parts = []
    for index in range(len(table) // entry_size):
        raw = table[index * entry_size:(index + 1) * entry_size]
        first_lba, last_lba, attributes = struct.unpack_from("<QQQ", raw, 32)
        parts.append({"type GUID": _guid(raw[:16]), "unique GUID": _guid(raw[16:32]), "first LBA": str(first_lba),
                      "last LBA": str(last_lba), "attributes": f"0x{attributes:x}",
                      "name": repr(raw[56:128].decode("utf-16-le", "replace").rstrip("\0"))})
    return fields, parts, backup_lba * 512, (entries_lba * 512, entries_lba * 512 + count * entry_size)


def _compare_gpt(label: str, name: str, handles: tuple[BinaryIO, BinaryIO], offsets: tuple[int, int],
                 report: _Report, covered: list[tuple[int, int]] | None) -> tuple[int, int] | None:
    """Compare two GPTs field by field; returns where their backups are, if both parse."""
    try:
        (fields_one, parts_one, backup_one, span_one) = _gpt(handles[0], offsets[0])
        (fields_two, parts_two, backup_two, span_two) = _gpt(handles[1], offsets[1])
    except (CorruptArtifact, struct.error) as exc:
        report.add(f"{label}: {name}", f"not comparable: {exc}")
        return None
    _compare_fields(f"{label}: {name} header", fields_one, fields_two, report)
    empty = _guid(bytes(16))
    for index, (part_one, part_two) in enumerate(zip(parts_one, parts_two, strict=False), start=1):
        if part_one["type GUID"] == part_two["type GUID"] == empty:
            continue
        _compare_fields(f"{label}: {name} partition {index}", part_one, part_two, report)
    if covered is not None:
        covered += [(offsets[0], offsets[0] + 512), span_one, span_two]
    return backup_one, backup_two


# ---------------------------------------------------------------------------------------- FAT


def _fat_date(date: int, time: int | None = None, hundredths: int = 0) -> str:
    if date == 0:
        return "unset"
    text = f"{1980 + (date >> 9):04d}-{(date >> 5) & 0x0F:02d}-{date & 0x1F:02d}"
    if time is None:
        return text
    seconds = (time & 0x1F) * 2 + hundredths // 100
    text += f"T{time >> 11:02d}:{(time >> 5) & 0x3F:02d}:{seconds:02d}"
    return text + (f".{hundredths % 100:02d}" if hundredths % 100 else "")


def _fat_attributes(value: int) -> str:
    letters = "".join(letter for bit, letter in zip(range(6), "RHSVDA", strict=True) if value & (1 << bit))
    return f"0x{value:02x} ({letters or '-'})"


def _lfn_checksum(short_name: bytes) -> int:
    total = 0
    for byte in short_name:
        total = (((total & 1) << 7) + (total >> 1) + byte) & 0xFF
    return total


class _Fat:
    """A minimal FAT12/16/32 reader: boot sector, directory tree, cluster chains."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.size = handle.seek(0, os.SEEK_END)
        boot = self._read(0, 512)
        (self.sector_size, self.cluster_sectors, reserved, self.fat_count, root_entries, total16, media,
         fat_sectors16) = struct.unpack_from("<HBHBHHBH", boot, 11)
        hidden, total32 = struct.unpack_from("<II", boot, 28)
        if self.sector_size not in (512, 1024, 2048, 4096) or self.cluster_sectors not in (1, 2, 4, 8, 16, 32, 64, 128):
            raise CorruptArtifact(f"implausible FAT geometry: {self.sector_size} bytes/sector, "
                                  f"{self.cluster_sectors} sectors/cluster")
        if not reserved or not self.fat_count:
            raise CorruptArtifact("FAT boot sector declares no reserved sectors or no FATs")
        fat_sectors = fat_sectors16 or struct.unpack_from("<I", boot, 36)[0]
        total = total16 or total32
        root_sectors = (root_entries * 32 + self.sector_size - 1) // self.sector_size
        self.root_offset = (reserved + self.fat_count * fat_sectors) * self.sector_size
        self.data_offset = self.root_offset + root_sectors * self.sector_size
        clusters = (total - reserved - self.fat_count * fat_sectors - root_sectors) // self.cluster_sectors
        # As Linux does: a zero 16-bit FAT size means FAT32 (mkfs.vfat -F 32 makes small ones too);
        # otherwise the cluster count, not the label, tells FAT12 from FAT16.
        self.bits = 32 if not fat_sectors16 else 12 if clusters < 4085 else 16
        self.cluster_count = clusters
        ebpb = 0x40 if self.bits == 32 else 0x24
        self.root_cluster = struct.unpack_from("<I", boot, 44)[0] if self.bits == 32 else 0
        self.root_size = root_entries * 32
        self.fat = self._read(reserved * self.sector_size, fat_sectors * self.sector_size)
        signature = boot[ebpb + 2]
        self.boot_fields = {
            "OEM name": repr(boot[3:11].decode("latin-1")), "FAT type": f"FAT{self.bits}",
            "bytes per sector": str(self.sector_size), "sectors per cluster": str(self.cluster_sectors),
            "reserved sectors": str(reserved), "FAT count": str(self.fat_count), "root entries": str(root_entries),
            "total sectors": str(total), "media": f"0x{media:02x}", "sectors per FAT": str(fat_sectors),
            "hidden sectors": str(hidden), "extended boot signature": f"0x{signature:02x}"}
        if signature in (0x28, 0x29):
            self.boot_fields["volume serial"] = f"0x{struct.unpack_from('<I', boot, ebpb + 3)[0]:08X}"
        if signature == 0x29:
            self.boot_fields["volume label"] = repr(boot[ebpb + 7:ebpb + 18].decode("latin-1").rstrip())
            self.boot_fields["file system type"] = repr(boot[ebpb + 18:ebpb + 26].decode("latin-1").rstrip())

    def _read(self, offset: int, size: int) -> bytes:
        if offset + size > self.size:
            raise CorruptArtifact(f"FAT image ends at byte {self.size}, {offset + size} needed")
        self.handle.seek(offset)
        return self.handle.read(size)

    def _next(self, cluster: int) -> int:
        if self.bits == 12:
            pair = int.from_bytes(self.fat[cluster + cluster // 2:cluster + cluster // 2 + 2], "little")
            return pair >> 4 if cluster & 1 else pair & 0xFFF
        if self.bits == 16:
            return int.from_bytes(self.fat[cluster * 2:cluster * 2 + 2], "little")
        return int.from_bytes(self.fat[cluster * 4:cluster * 4 + 4], "little") & 0x0FFFFFFF

    def chain(self, first: int) -> Iterator[int]:
        end = {12: 0xFF8, 16: 0xFFF8, 32: 0x0FFFFFF8}[self.bits]
        cluster, seen = first, set()
        while 2 <= cluster < end:
            if cluster in seen or cluster >= self.cluster_count + 2:
                raise CorruptArtifact(f"FAT cluster chain from {first} loops or leaves the volume at {cluster}")
            seen.add(cluster)
            yield cluster
            cluster = self._next(cluster)

    def _cluster(self, cluster: int) -> bytes:
        size = self.cluster_sectors * self.sector_size
        return self._read(self.data_offset + (cluster - 2) * size, size)

    def content(self, first: int, size: int) -> bytes:
        data = b"".join(self._cluster(cluster) for cluster in self.chain(first)) if first else b""
        if len(data) < size:
            raise CorruptArtifact(f"a FAT file of {size} bytes has only {len(data)} bytes of clusters")
        return data[:size]

    def walk(self) -> Iterator[tuple[str, bytes]]:
        """(path, 32-byte short entry) for every file and folder; the root's label entry as ('', entry)."""
        if self.bits == 32:
            root = b"".join(self._cluster(cluster) for cluster in self.chain(self.root_cluster))
        else:
            root = self._read(self.root_offset, self.root_size)
        yield from self._walk_dir(root, "", 0)

    def _walk_dir(self, data: bytes, parent: str, depth: int) -> Iterator[tuple[str, bytes]]:
        if depth > 32:
            raise CorruptArtifact(f"FAT folders nest deeper than 32 levels at {parent}")
        long_parts: dict[int, bytes] = {}
        long_checksum = -1
        for offset in range(0, len(data) - 31, 32):
            entry = data[offset:offset + 32]
            if entry[0] == 0:
                return
            attributes = entry[11]
            if entry[0] == 0xE5:
                long_parts = {}
                continue
            if attributes & 0x3F == 0x0F:
                if entry[0] & 0x40:
                    long_parts, long_checksum = {}, entry[13]
                long_parts[entry[0] & 0x1F] = entry[1:11] + entry[14:26] + entry[28:32]
                continue
            name = self._short_name(entry)
            if long_parts and long_checksum == _lfn_checksum(entry[:11]):
                raw = b"".join(long_parts[index] for index in sorted(long_parts))
                name = raw.decode("utf-16-le", "replace").split("\0", 1)[0]
            long_parts = {}
            if attributes & 0x08 and not attributes & 0x10:
                if not parent:
                    yield "", entry
                continue
            if name in (".", ".."):
                continue
            path = f"{parent}{name}"
            yield path, entry
            if attributes & 0x10:
                first = self.first_cluster(entry)
                children = b"".join(self._cluster(cluster) for cluster in self.chain(first)) if first else b""
                yield from self._walk_dir(children, path + "/", depth + 1)

    @staticmethod
    def _short_name(entry: bytes) -> str:
        raw = bytes([0xE5]) + entry[1:11] if entry[0] == 0x05 else entry[:11]
        base, extension = raw[:8].rstrip(b" ").decode("cp437"), raw[8:11].rstrip(b" ").decode("cp437")
        # Windows NT keeps the case of all-lower-case 8.3 names in these two bits; mtools writes them.
        if entry[12] & 0x08:
            base = base.lower()
        if entry[12] & 0x10:
            extension = extension.lower()
        return f"{base}.{extension}" if extension else base

    def first_cluster(self, entry: bytes) -> int:
        high = int.from_bytes(entry[20:22], "little") if self.bits == 32 else 0
        return (high << 16) | int.from_bytes(entry[26:28], "little")


def _fat_entries(fat: _Fat) -> tuple[list[_Entry], dict[str, tuple[int, int]], dict[str, str]]:
    entries: list[_Entry] = []
    files: dict[str, tuple[int, int]] = {}
    label: dict[str, str] = {}
    for path, entry in fat.walk():
        if not path:
            label["root folder volume label"] = repr(entry[:11].decode("latin-1").rstrip())
            continue
        create_time, create_date, access_date, _, write_time, write_date, _, size = struct.unpack_from(
            "<HHHHHHHI", entry, 14)
        first = fat.first_cluster(entry)
        is_dir = bool(entry[11] & 0x10)
        fields = {"type": "dir" if is_dir else "file", "attributes": _fat_attributes(entry[11]),
                  "size": str(size), "8.3 name": repr(_Fat._short_name(entry)),
                  "creation time": _fat_date(create_date, create_time, entry[13]),
                  "access date": _fat_date(access_date), "write time": _fat_date(write_date, write_time),
                  "first cluster": str(first)}
        digest = None
        if not is_dir:
            digest = hashlib.sha256(fat.content(first, size)).hexdigest()
            files[path] = (first, size)
        entries.append(_Entry(path, fields, digest, size))
    return entries, files, label


def _compare_fat(label: str, first: Path, second: Path, report: _Report, ctx: _Context) -> None:
    with first.open("rb") as handle_one, second.open("rb") as handle_two:
        fat_one, fat_two = _Fat(handle_one), _Fat(handle_two)
        (entries_one, files_one, label_one), (entries_two, files_two, label_two) = (_fat_entries(fat_one),
                                                                                    _fat_entries(fat_two))
        _compare_fields(f"{label}: FAT boot sector", {**fat_one.boot_fields, **label_one},
                        {**fat_two.boot_fields, **label_two}, report)

        def extractor(fat: _Fat, files: dict[str, tuple[int, int]]) -> Extractor:
            def extract(name: str, destination: Path) -> None:
                destination.write_bytes(fat.content(*files[name]))
            return extract

        _compare_entries(label, entries_one, entries_two, report, ctx, prefix="FAT entry ",
                         extract=(extractor(fat_one, files_one), extractor(fat_two, files_two)))


# ---------------------------------------------------------------------------------------- ELF

_SECTION_TYPES = {0: "NULL", 1: "PROGBITS", 2: "SYMTAB", 3: "STRTAB", 4: "RELA", 5: "HASH", 6: "DYNAMIC",
                  7: "NOTE", 8: "NOBITS", 9: "REL", 11: "DYNSYM", 14: "INIT_ARRAY", 15: "FINI_ARRAY"}
_SHT_NOBITS = 8
# Leads shown next to a differing section: where builds leak their date, host or paths, and what follows.
_LEAKY = "; embedded dates, host names or paths often live here"
_SECTION_HINTS = {".rodata": _LEAKY, ".data": _LEAKY, ".comment": _LEAKY, ".debug_str": _LEAKY,
                  ".debug_line": _LEAKY, ".note.gnu.build-id": "; the build ID hashes the other sections: look there",
                  ".gnu_debuglink": "; it names the debug file by build ID: look at the other sections"}


def _elf(handle: BinaryIO) -> tuple[dict[str, str], list[_Entry]]:
    """The ELF header's fields and one entry per section (name, type, flags, size, content sha256)."""
    size = handle.seek(0, os.SEEK_END)
    handle.seek(0)
    ident = handle.read(64)
    if len(ident) < 52 or ident[4] not in (1, 2) or ident[5] not in (1, 2):
        raise CorruptArtifact("ELF identification is truncated or names an unknown class or byte order")
    wide, order = ident[4] == 2, "<" if ident[5] == 1 else ">"
    header_format = order + ("HHIQQQIHHHHHH" if wide else "HHIIIIIHHHHHH")
    (elf_type, machine, _, entry, _, section_offset, flags, _, _, program_count, section_size, section_count,
     names_index) = struct.unpack_from(header_format, ident, 16)
    section_format = order + ("IIQQQQIIQQ" if wide else "IIIIIIIIII")
    if section_offset and section_size < struct.calcsize(section_format):
        raise CorruptArtifact(f"ELF section headers of {section_size} bytes are too small")

    def section_header(index: int) -> tuple[int, ...]:
        handle.seek(section_offset + index * section_size)
        raw = handle.read(section_size)
        if len(raw) < section_size:
            raise CorruptArtifact(f"ELF section header {index} lies past the end of the file")
        return struct.unpack_from(section_format, raw)

    if section_offset and section_offset + section_size > size:
        raise CorruptArtifact(f"ELF section headers at byte {section_offset} lie past the end of the file")
    if section_offset and section_count == 0:
        section_count = section_header(0)[5]  # more than 0xff00 sections: the count moves to section 0
    if section_offset and names_index == 0xFFFF:
        names_index = section_header(0)[6]
    if section_offset + section_count * section_size > size:
        raise CorruptArtifact(f"{section_count} ELF section headers at byte {section_offset} run past the end")
    headers = [section_header(index) for index in range(section_count)] if section_offset else []
    fields = {"type": str(elf_type), "machine": str(machine), "entry point": f"0x{entry:x}", "flags": f"0x{flags:x}",
              "program headers": str(program_count), "sections": str(section_count)}
    names = b""
    if headers:
        if names_index >= len(headers):
            raise CorruptArtifact(f"ELF section name table index {names_index} is out of range")
        names_offset, names_size = headers[names_index][4], headers[names_index][5]
        if names_offset + names_size > size:
            raise CorruptArtifact("ELF section name table lies past the end of the file")
        handle.seek(names_offset)
        names = handle.read(names_size)
    entries: list[_Entry] = []
    seen: dict[str, int] = {}
    for index, (name_at, kind, section_flags, _, offset, length, *_) in enumerate(headers):
        if index == 0:
            continue
        name = _unique(names[name_at:].split(b"\0", 1)[0].decode("latin-1") or f"[{index}]", seen)
        digest = None
        if kind != _SHT_NOBITS:
            if offset + length > size:
                raise CorruptArtifact(f"ELF section {name} lies past the end of the file")
            handle.seek(offset)
            digest = _sha256_stream(handle, length)
        entries.append(_Entry(name, {"type": _SECTION_TYPES.get(kind, f"0x{kind:x}"), "flags": f"0x{section_flags:x}",
                                     "size": str(length)}, digest, length))
    return fields, entries


def _strings(path: Path) -> dict[bytes, None]:
    # Distinct printable runs in order of first appearance, as `strings -n 8` would list them.
    return dict.fromkeys(match.group() for match in _PRINTABLE.finditer(path.read_bytes()))


def _compare_elf(label: str, first: Path, second: Path, report: _Report, ctx: _Context) -> None:
    with first.open("rb") as handle_one, second.open("rb") as handle_two:
        (fields_one, sections_one), (fields_two, sections_two) = _elf(handle_one), _elf(handle_two)
    _compare_fields(f"{label}: ELF header", fields_one, fields_two, report)

    _compare_entries(label, sections_one, sections_two, report, ctx, prefix="section ",
                     hint=lambda name: _SECTION_HINTS.get(name, ""))
    if max(first.stat().st_size, second.stat().st_size) > STRINGS_MAX_FILE:
        return
    strings_one, strings_two = _strings(first), _strings(second)
    for side, mine, theirs in (("first", strings_one, strings_two), ("second", strings_two, strings_one)):
        for text in [text for text in mine if text not in theirs][:STRINGS_SHOWN]:
            report.add(f"{label}: strings", f"only in {side} build: {text.decode('ascii')[:200]!r}")


# ---------------------------------------------------------------------------------------- text


def _line(line: str) -> str:
    # Line endings other than "\n" are the whole difference surprisingly often: show them.
    body = line.rstrip("\r\n")
    ending = line[len(body):]
    if ending == "\n":
        return body
    return body + (" (no newline at end)" if not ending else f" (ends {ending!r})")


def _compare_text(label: str, first: Path, second: Path, report: _Report, ctx: _Context) -> None:
    lines_one = first.read_text(encoding="utf-8").splitlines(keepends=True)
    lines_two = second.read_text(encoding="utf-8").splitlines(keepends=True)
    diff = list(difflib.unified_diff(lines_one, lines_two, n=2))[2:]  # without the ---/+++ lines
    for line in diff[:DIFF_LINES]:
        report.add(label, _line(line) if line.startswith("@@") else line[0] + _line(line[1:]))
    if len(diff) > DIFF_LINES:
        report.add(label, f"{len(diff) - DIFF_LINES} more diff lines not shown")


_COMPARERS: dict[str, Comparer] = {
    "tar": _compare_tar, "cpio": _compare_cpio, "gzip": _compare_compressed, "xz": _compare_compressed,
    "zstd": _compare_compressed, "iso9660": _compare_iso, "fat": _compare_fat, "elf": _compare_elf,
    "text": _compare_text, "binary": _compare_bytes,
}
