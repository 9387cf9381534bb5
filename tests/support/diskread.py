"""Read an installed disk image from Python: GPT, LVM2 and, through debugfs, ext4 trees.

Tests of an installer need to look inside the raw disk it wrote. Loop devices, mounts and
device-mapper need root and a cooperative kernel (CI containers often have neither), so this
reads the on-disk formats directly and only shells out to `debugfs`, which opens a filesystem
image as a plain file.

The GPT itself is read by bootkiln.formats.gpt, which the artifact diff shares.

Supported: GPT with 512-byte sectors; an LVM2 PV inside one partition whose LVs are linear
(`striped` with one stripe, any number of segments) on that same PV. Anything else is refused
with an error that names the image and the layout, never guessed at.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from bootkiln.errors import EnvironmentProblem, InputError
from bootkiln.formats import gpt
from bootkiln.formats.corrupt import CorruptArtifact

SECTOR = gpt.SECTOR  # LVM counts in 512-byte sectors too
CHUNK = 1 << 20  # extract() copies, and leaves holes for zeros, in units of this many bytes


class DiskReadError(InputError):
    """The image is damaged, or laid out in a way this reader does not handle."""


class UnsupportedLayout(DiskReadError):
    """The image is valid, but uses a layout (RAID, thin, multi-PV...) this reader refuses."""


def _read_at(image: Path, offset: int, length: int) -> bytes:
    with image.open("rb") as stream:
        stream.seek(offset)
        return stream.read(length)


# --- partition tables --------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskLabel:
    """What the first sectors say about how the disk is partitioned."""

    mbr_signature: bool  # 0x55AA at byte 510: an MBR (real or GPT's protective one) is present
    mbr_types: tuple[int, ...]  # the non-empty MBR partition types (0xEE = GPT protective)
    gpt: bool  # "EFI PART" at LBA 1 (not checksummed here: read_gpt does that)

    @property
    def has_partition_table(self) -> bool:
        return self.gpt or (self.mbr_signature and bool(self.mbr_types))


def probe_disk(image: Path) -> DiskLabel:
    head = _read_at(image, 0, 2 * SECTOR)
    signature = len(head) >= SECTOR and head[510:512] == b"\x55\xaa"
    types: tuple[int, ...] = ()
    if signature:
        types = tuple(head[446 + 16 * index + 4] for index in range(4) if head[446 + 16 * index + 4])
    return DiskLabel(signature, types, head[SECTOR:SECTOR + 8] == gpt.SIGNATURE)


@dataclass(frozen=True)
class Partition:
    number: int  # 1-based index in the GPT entry array, as Linux names it (sda3 is number 3)
    name: str
    type_guid: str  # lowercase canonical, e.g. "0fc63daf-8483-4772-8e79-3d69d8477de4"
    unique_guid: str
    first_lba: int
    last_lba: int  # inclusive, as GPT stores it
    attributes: int  # bit 2 is "legacy BIOS bootable"

    @property
    def start(self) -> int:
        return self.first_lba * SECTOR

    @property
    def size(self) -> int:
        return (self.last_lba - self.first_lba + 1) * SECTOR


def read_gpt(image: Path) -> list[Partition]:
    """The used entries of the primary GPT, checksums verified, in entry-array order."""
    header = _read_at(image, SECTOR, SECTOR)
    if header[:8] != gpt.SIGNATURE:
        if _read_at(image, 4096, 8) == gpt.SIGNATURE:
            raise UnsupportedLayout(f"{image}: GPT with 4096-byte sectors is not supported")
        label = probe_disk(image)
        what = "no partition table"
        if label.has_partition_table:
            what = "an MBR with partition types " + ", ".join(f"{kind:#04x}" for kind in label.mbr_types)
        raise DiskReadError(f"{image}: no GPT header at LBA 1 (found {what})")
    try:
        with image.open("rb") as handle:
            entries = gpt.read_primary(handle)
    except CorruptArtifact as error:
        raise DiskReadError(f"{image}: {error}") from None
    return [Partition(entry.number, entry.name, entry.type_guid, entry.unique_guid, entry.first_lba, entry.last_lba,
                      entry.attributes) for entry in entries]


# --- LVM2: on-disk label and metadata area ------------------------------------------------------

_LABEL_SCAN_SECTORS = 4  # LVM looks for its label in the first four sectors of a PV
_LABEL_HEADER = struct.Struct("<8sQII8s")  # "LABELONE", own sector, CRC, pv_header offset, type
_LABEL_TYPE = b"LVM2 001"
_UUID_LEN = 32
_DISK_LOCN = struct.Struct("<QQ")  # offset, size (bytes); a zero offset ends a list
_MDA_HEADER = struct.Struct("<I16sIQQ")  # CRC, magic, version, start, size
_MDA_MAGIC = b" LVM2 x[5A%r0N*>"
_MDA_HEADER_SIZE = 512  # the circular text buffer starts after it
_RAW_LOCN = struct.Struct("<QQII")  # offset (from the mda start), size, text CRC, flags
_RAW_LOCN_IGNORED = 0x1
_LVM_CRC_SEED = 0xF597A6CF


def _lvm_crc(data: bytes, crc: int = _LVM_CRC_SEED) -> int:
    """LVM's calc_crc: CRC-32 (zlib's polynomial) seeded with 0xf597a6cf, no final inversion.

    zlib.crc32 inverts on the way in and out, so undo both to continue from LVM's raw state.
    """
    return zlib.crc32(data, crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


def _format_lvm_uuid(raw: bytes) -> str:
    # LVM prints its 32-character ids in 6-4-4-4-4-4-6 groups, as the metadata text does.
    text = raw.decode("ascii", errors="replace")
    cuts = (0, 6, 10, 14, 18, 22, 26, 32)
    return "-".join(text[start:end] for start, end in itertools.pairwise(cuts))


@dataclass(frozen=True)
class PvLabel:
    pv_uuid: str  # dashed, as in the metadata's `id = "..."`
    device_size: int  # bytes, as pvcreate saw the device
    data_offset: int  # bytes from the PV start to the first extent (pe_start), from the label
    metadata_areas: tuple[tuple[int, int], ...]  # (offset, size) in bytes from the PV start


def _disk_locns(sector: bytes, offset: int, what: str) -> tuple[list[tuple[int, int]], int]:
    found: list[tuple[int, int]] = []
    while True:
        if offset + _DISK_LOCN.size > len(sector):
            raise DiskReadError(f"LVM label: unterminated list of {what}")
        area_offset, area_size = _DISK_LOCN.unpack_from(sector, offset)
        offset += _DISK_LOCN.size
        if area_offset == 0:
            return found, offset
        found.append((area_offset, area_size))


def _read_label(image: Path, start: int, size: int) -> PvLabel | None:
    head = _read_at(image, start, min(size, _LABEL_SCAN_SECTORS * SECTOR))
    for number in range(len(head) // SECTOR):
        sector = head[number * SECTOR:(number + 1) * SECTOR]
        if sector[:8] != b"LABELONE":
            continue
        _, own_sector, crc, pv_offset, kind = _LABEL_HEADER.unpack_from(sector)
        if own_sector != number:
            continue  # a stale copy that moved with the data (e.g. the PV was dd'ed): not ours
        where = f"{image}: LVM label at byte {start + number * SECTOR}"
        if _lvm_crc(sector[20:]) != crc:
            raise DiskReadError(f"{where}: checksum mismatch (corrupt label)")
        if kind != _LABEL_TYPE:
            raise UnsupportedLayout(f"{where}: label type {kind!r}, only {_LABEL_TYPE!r} is supported")
        if not _LABEL_HEADER.size <= pv_offset <= SECTOR - _UUID_LEN - 8:
            raise DiskReadError(f"{where}: pv_header offset {pv_offset} is out of range")
        pv_uuid = sector[pv_offset:pv_offset + _UUID_LEN]
        (device_size,) = struct.unpack_from("<Q", sector, pv_offset + _UUID_LEN)
        try:
            data_areas, next_offset = _disk_locns(sector, pv_offset + _UUID_LEN + 8, "data areas")
            metadata_areas, _ = _disk_locns(sector, next_offset, "metadata areas")
        except DiskReadError as error:
            raise DiskReadError(f"{where}: {error.message}") from None
        if len(data_areas) != 1:
            raise UnsupportedLayout(f"{where}: {len(data_areas)} data areas, expected exactly 1")
        return PvLabel(_format_lvm_uuid(pv_uuid), device_size, data_areas[0][0], tuple(metadata_areas))
    return None


def _read_metadata_text(image: Path, start: int, size: int, area: tuple[int, int]) -> bytes | None:
    """The committed metadata text of one metadata area, or None if it holds none (orphan PV)."""
    area_offset, area_size = area
    where = f"{image}: LVM metadata area at byte {start + area_offset}"
    if area_offset + area_size > size or area_size <= _MDA_HEADER_SIZE:
        raise DiskReadError(f"{where}: area of {area_size} bytes does not fit the PV ({size} bytes)")
    header = _read_at(image, start + area_offset, _MDA_HEADER_SIZE)
    crc, magic, version, mda_start, mda_size = _MDA_HEADER.unpack_from(header)
    if magic != _MDA_MAGIC:
        raise DiskReadError(f"{where}: bad mda_header magic {magic!r}")
    if _lvm_crc(header[4:]) != crc:
        raise DiskReadError(f"{where}: mda_header checksum mismatch")
    if version != 1:
        raise UnsupportedLayout(f"{where}: mda_header version {version}, only 1 is supported")
    if mda_start != area_offset or mda_size != area_size:
        raise DiskReadError(f"{where}: mda_header says start {mda_start} size {mda_size}, "
                            f"the label says {area_offset} size {area_size}")
    # raw_locns[0] is the committed metadata; [1], if any, a precommitted one we must not trust.
    text_offset, text_size, text_crc, flags = _RAW_LOCN.unpack_from(header, _MDA_HEADER.size)
    if flags & _RAW_LOCN_IGNORED or text_offset == 0:
        return None
    if not _MDA_HEADER_SIZE <= text_offset < mda_size or text_size > mda_size - _MDA_HEADER_SIZE:
        raise DiskReadError(f"{where}: metadata location {text_offset}+{text_size} is outside the area")
    # The text lives in a ring buffer after the header: a copy near the end wraps to its start.
    first = min(text_size, mda_size - text_offset)
    text = _read_at(image, start + area_offset + text_offset, first)
    if first < text_size:
        text += _read_at(image, start + area_offset + _MDA_HEADER_SIZE, text_size - first)
    if _lvm_crc(text) != text_crc:
        raise DiskReadError(f"{where}: metadata text checksum mismatch")
    return text.split(b"\0", 1)[0]


# --- LVM2: the text metadata format -------------------------------------------------------------

Scalar: TypeAlias = int | float | str
Value: TypeAlias = "Scalar | list[Scalar] | dict[str, Value]"
Section: TypeAlias = "dict[str, Value]"

_TOKEN = re.compile(r"""
    (?P<skip>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<raw>'[^']*')
  | (?P<punct>[{}\[\]=,])
  | (?P<word>[^\s{}\[\]=,"'\#]+)
""", re.VERBOSE | re.DOTALL)
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?\d+\.\d*")
_MAX_DEPTH = 32


class MetadataSyntaxError(DiskReadError):
    pass


@dataclass(frozen=True)
class _Token:
    kind: str  # "string", "punct", "word" or "end"
    text: str
    line: int

    def punct(self, text: str) -> bool:
        return self.kind == "punct" and self.text == text


def _tokens(text: str) -> Iterator[_Token]:
    position, line = 0, 1
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise MetadataSyntaxError(f"line {line}: unexpected {text[position:position + 20]!r}")
        kind, token = match.lastgroup or "", match.group()
        if kind == "string":
            yield _Token("string", re.sub(r"\\(.)", r"\1", token[1:-1], flags=re.DOTALL), line)
        elif kind == "raw":
            yield _Token("string", token[1:-1], line)
        elif kind != "skip":
            yield _Token(kind, token, line)
        line += token.count("\n")
        position = match.end()
    yield _Token("end", "", line)


class _Parser:
    """LVM's config syntax: `key = value` and `name { ... }`; values are ints, floats, strings
    or flat lists of them. A recursive descent over a token stream with one token of lookahead."""

    def __init__(self, text: str) -> None:
        self._stream = _tokens(text)
        self._next = next(self._stream)

    def _take(self) -> _Token:
        token, self._next = self._next, next(self._stream, _Token("end", "", self._next.line))
        return token

    def _fail(self, token: _Token, expected: str) -> MetadataSyntaxError:
        found = "end of text" if token.kind == "end" else repr(token.text)
        return MetadataSyntaxError(f"line {token.line}: expected {expected}, found {found}")

    def section(self, depth: int = 0) -> Section:
        if depth > _MAX_DEPTH:
            raise self._fail(self._next, f"at most {_MAX_DEPTH} nested sections")
        result: Section = {}
        while not (self._next.kind == "end" or self._next.punct("}")):
            name = self._take()
            if name.kind != "word":
                raise self._fail(name, "a key or section name")
            if name.text in result:
                raise MetadataSyntaxError(f"line {name.line}: {name.text!r} appears twice")
            opener = self._take()
            if opener.punct("{"):
                result[name.text] = self.section(depth + 1)
                closer = self._take()
                if not closer.punct("}"):
                    raise self._fail(closer, f"'}}' closing section {name.text!r}")
            elif opener.punct("="):
                result[name.text] = self._value()
            else:
                raise self._fail(opener, f"'=' or '{{' after {name.text!r}")
        return result

    def document(self) -> Section:
        result = self.section()
        if self._next.kind != "end":
            raise self._fail(self._next, "a key or section name")
        return result

    def _scalar(self, token: _Token) -> Scalar:
        if token.kind == "string":
            return token.text
        if token.kind == "word" and _INT.fullmatch(token.text):
            return int(token.text)
        if token.kind == "word" and _FLOAT.fullmatch(token.text):
            return float(token.text)
        raise self._fail(token, "a number, a quoted string or '['")

    def _value(self) -> Scalar | list[Scalar]:
        token = self._take()
        if not token.punct("["):
            return self._scalar(token)
        items: list[Scalar] = []
        while not self._next.punct("]"):
            items.append(self._scalar(self._take()))
            if self._next.punct(","):
                self._take()
            elif not self._next.punct("]"):
                raise self._fail(self._next, "',' or ']' in a list")
        self._take()
        return items


def parse_metadata(text: str) -> Section:
    """Parse LVM text metadata (or any LVM config text) into nested dicts."""
    return _Parser(text).document()


class _Fields:
    """Typed access to one metadata section, with errors that say where the bad field is."""

    def __init__(self, section: Section, where: str) -> None:
        self.section = section
        self.where = where

    def _get(self, key: str) -> Value:
        if key not in self.section:
            raise DiskReadError(f"{self.where}: missing {key!r}")
        return self.section[key]

    def integer(self, key: str) -> int:
        value = self._get(key)
        if not isinstance(value, int):
            raise DiskReadError(f"{self.where}: {key!r} should be an integer, not {value!r}")
        return value

    def string(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise DiskReadError(f"{self.where}: {key!r} should be a string, not {value!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.section.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise DiskReadError(f"{self.where}: {key!r} should be a list of strings, not {value!r}")
        return tuple(str(item) for item in value)

    def items(self, key: str) -> list[Scalar]:
        value = self._get(key)
        if not isinstance(value, list):
            raise DiskReadError(f"{self.where}: {key!r} should be a list, not {value!r}")
        return value

    def sub(self, key: str) -> _Fields:
        value = self._get(key)
        if not isinstance(value, dict):
            raise DiskReadError(f"{self.where}: {key!r} should be a section, not {value!r}")
        return _Fields(value, f"{self.where}/{key}")

    def children(self) -> Iterator[tuple[str, _Fields]]:
        for name, value in self.section.items():
            if isinstance(value, dict):
                yield name, _Fields(value, f"{self.where}/{name}")

    def subsections(self, key: str) -> Iterator[tuple[str, _Fields]]:
        """The sections inside an optional section (a VG without LVs has no logical_volumes)."""
        if key in self.section:
            yield from self.sub(key).children()


# --- LVM2: the volume group model ---------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    start_extent: int  # first logical extent of the LV this segment covers
    extent_count: int
    type: str  # "striped" for linear; "raid1", "thin", "mirror"... are reported, not mapped
    stripe_count: int = 0  # striped segments only
    pv: str | None = None  # the PV's metadata name ("pv0") when striped with one stripe
    pv_start_extent: int | None = None


@dataclass(frozen=True)
class LogicalVolume:
    name: str
    uuid: str
    status: tuple[str, ...]  # e.g. ("READ", "WRITE", "VISIBLE")
    flags: tuple[str, ...]
    segments: tuple[Segment, ...]  # ordered by start_extent

    @property
    def extent_count(self) -> int:
        return sum(segment.extent_count for segment in self.segments)


@dataclass(frozen=True)
class PhysicalVolume:
    name: str  # the metadata's key: "pv0"
    uuid: str
    pe_start: int  # sectors from the PV start to extent 0
    pe_count: int
    device: str  # where the PV was when metadata was last written: a hint, not a path to use


@dataclass(frozen=True)
class VolumeGroup:
    name: str
    uuid: str
    seqno: int
    extent_size: int  # sectors
    physical_volumes: tuple[PhysicalVolume, ...]
    logical_volumes: tuple[LogicalVolume, ...]
    image: Path
    label: PvLabel  # the label of the PV we read
    pv_name: str  # which of physical_volumes lives in the partition we read
    pv_offset: int  # byte offset of that PV in the image
    pv_size: int  # bytes

    def lv(self, name: str) -> LogicalVolume:
        for volume in self.logical_volumes:
            if volume.name == name:
                return volume
        known = ", ".join(volume.name for volume in self.logical_volumes) or "none"
        raise DiskReadError(f"{self.image}: VG {self.name} has no logical volume {name!r} (it has: {known})")

    def pv(self, name: str) -> PhysicalVolume:
        for volume in self.physical_volumes:
            if volume.name == name:
                return volume
        raise DiskReadError(f"{self.image}: VG {self.name} metadata has no physical volume {name!r}")


def _segment(fields: _Fields) -> Segment:
    start, count, kind = fields.integer("start_extent"), fields.integer("extent_count"), fields.string("type")
    if start < 0 or count <= 0:
        raise DiskReadError(f"{fields.where}: bad extent range {start}+{count}")
    if kind != "striped":
        return Segment(start, count, kind)
    stripe_count = fields.integer("stripe_count")
    stripes = fields.items("stripes")
    if stripe_count < 1 or len(stripes) != 2 * stripe_count:
        raise DiskReadError(f"{fields.where}: {stripe_count} stripes but stripes = {stripes!r}")
    pairs = [(pv, extent) for pv, extent in zip(stripes[::2], stripes[1::2], strict=True)
             if isinstance(pv, str) and isinstance(extent, int) and extent >= 0]
    if len(pairs) != stripe_count:
        raise DiskReadError(f"{fields.where}: stripes should be [\"pvN\", extent, ...], not {stripes!r}")
    if stripe_count != 1:
        return Segment(start, count, kind, stripe_count)
    return Segment(start, count, kind, 1, *pairs[0])


def _logical_volume(name: str, fields: _Fields) -> LogicalVolume:
    segments = [_segment(sub) for key, sub in fields.children() if re.fullmatch(r"segment\d+", key)]
    declared = fields.integer("segment_count")
    if declared != len(segments):
        raise DiskReadError(f"{fields.where}: segment_count is {declared} but {len(segments)} segments are listed")
    segments.sort(key=lambda segment: segment.start_extent)
    return LogicalVolume(name, fields.string("id"), fields.strings("status"), fields.strings("flags"), tuple(segments))


def _volume_group(document: Section, image: Path, label: PvLabel, start: int, size: int) -> VolumeGroup:
    top = _Fields(document, f"{image}: LVM metadata")
    if top.section.get("contents") != "Text Format Volume Group" or top.section.get("version") != 1:
        raise DiskReadError(f"{top.where}: not version 1 'Text Format Volume Group' metadata")
    groups = [key for key, value in document.items() if isinstance(value, dict)]
    if len(groups) != 1:
        raise DiskReadError(f"{top.where}: expected one volume group section, found {groups}")
    vg = top.sub(groups[0])
    pvs = tuple(
        PhysicalVolume(key, fields.string("id"), fields.integer("pe_start"), fields.integer("pe_count"),
                       str(fields.section.get("device", "")))
        for key, fields in vg.subsections("physical_volumes"))
    mine = [pv for pv in pvs if pv.uuid == label.pv_uuid]
    if not mine:
        raise DiskReadError(f"{vg.where}: the PV in this partition ({label.pv_uuid}) is not in the metadata")
    if mine[0].pe_start * SECTOR != label.data_offset:
        raise DiskReadError(f"{vg.where}: pe_start {mine[0].pe_start} sectors disagrees with the label's "
                            f"data area at byte {label.data_offset}")
    lvs = tuple(_logical_volume(key, fields) for key, fields in vg.subsections("logical_volumes"))
    extent_size = vg.integer("extent_size")
    if extent_size <= 0:
        raise DiskReadError(f"{vg.where}: extent_size {extent_size} is not positive")
    return VolumeGroup(groups[0], vg.string("id"), vg.integer("seqno"), extent_size, pvs, lvs, image, label,
                       mine[0].name, start, size)


def read_lvm(image: Path, start: int, size: int) -> VolumeGroup | None:
    """The VG of the LVM2 PV at image bytes [start, start+size), or None if that is no PV.

    None also for a PV that belongs to no VG yet (pvcreate only) or keeps no metadata copy of
    its own. With several metadata areas, the copy with the highest seqno wins, as in LVM.
    """
    label = _read_label(image, start, size)
    if label is None:
        return None
    found: list[tuple[int, VolumeGroup]] = []
    for area in label.metadata_areas:
        raw = _read_metadata_text(image, start, size, area)
        if raw is None:
            continue
        where = f"{image}: LVM metadata at byte {start + area[0]}"
        try:
            document = parse_metadata(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise DiskReadError(f"{where}: metadata text is not UTF-8 ({error})") from None
        except MetadataSyntaxError as error:
            raise DiskReadError(f"{where}: cannot parse metadata text: {error.message}") from None
        group = _volume_group(document, image, label, start, size)
        found.append((group.seqno, group))
    if not found:
        return None
    return max(found, key=lambda pair: pair[0])[1]


def lv_extents(vg: VolumeGroup, lv_name: str) -> list[tuple[int, int]]:
    """Where a linear LV's bytes are in the image: (offset, length) pairs in LV order.

    One pair per segment, not merged, so a two-segment LV gives two pairs even if they touch.
    """
    volume = vg.lv(lv_name)
    where = f"{vg.image}: LV {vg.name}/{lv_name}"
    pv = vg.pv(vg.pv_name)
    extent_bytes = vg.extent_size * SECTOR
    ranges = []
    expected_start = 0
    for segment in volume.segments:
        if segment.type != "striped" or segment.pv is None or segment.pv_start_extent is None:
            kind = segment.type if segment.type != "striped" else f"striped over {segment.stripe_count} PVs"
            raise UnsupportedLayout(f"{where}: segment at extent {segment.start_extent} is {kind}; "
                                    f"only linear (one-stripe) segments are supported")
        if segment.pv != vg.pv_name:
            raise UnsupportedLayout(f"{where}: segment at extent {segment.start_extent} is on {segment.pv}, "
                                    f"not on the PV in this partition ({vg.pv_name}); multi-PV VGs are not supported")
        if segment.start_extent != expected_start:
            raise DiskReadError(f"{where}: segments leave a gap or overlap at extent {expected_start}")
        if segment.pv_start_extent + segment.extent_count > pv.pe_count:
            raise DiskReadError(f"{where}: extents {segment.pv_start_extent}+{segment.extent_count} "
                                f"are past the PV's {pv.pe_count}")
        offset = vg.pv_offset + pv.pe_start * SECTOR + segment.pv_start_extent * extent_bytes
        length = segment.extent_count * extent_bytes
        if offset + length > vg.pv_offset + vg.pv_size:
            raise DiskReadError(f"{where}: extents run past the end of the partition holding the PV")
        ranges.append((offset, length))
        expected_start += segment.extent_count
    return ranges


# --- copying data out ---------------------------------------------------------------------------


def extract(image: Path, ranges: Sequence[tuple[int, int]], dest: Path) -> None:
    """Write the (offset, length) ranges of image, concatenated, to dest as a sparse file."""
    image_size = image.stat().st_size
    for offset, length in ranges:
        if offset < 0 or length < 0 or offset + length > image_size:
            raise DiskReadError(f"{image}: range {offset}+{length} is outside the image ({image_size} bytes)")
    total = 0
    try:
        with image.open("rb") as source, dest.open("wb") as out:
            for offset, length in ranges:
                source.seek(offset)
                remaining = length
                while remaining:
                    chunk = source.read(min(CHUNK, remaining))
                    if not chunk:
                        raise DiskReadError(f"{image}: short read at byte {offset + length - remaining}")
                    # An all-zero chunk becomes a hole: installed disks are mostly empty space.
                    if chunk.count(0) == len(chunk):
                        out.seek(len(chunk), os.SEEK_CUR)
                    else:
                        out.write(chunk)
                    remaining -= len(chunk)
                total += length
            out.truncate(total)  # a hole at the end still counts toward the size
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


_DEBUGFS_BANNER = re.compile(r"debugfs \d[\w.-]* \(.*\)")
_SBIN = "/usr/sbin:/sbin"


def _debugfs_quote(path: Path) -> str:
    # debugfs splits its request with libss, which honours "..." and reads "" inside as one ".
    text = str(path)
    if "\n" in text or "\0" in text:
        raise InputError(f"debugfs cannot take a path with a newline: {text!r}")
    return '"' + text.replace('"', '""') + '"'


def replay_journal(fs_image: Path) -> None:
    """Replay the ext4 journal of a filesystem copied from a disk whose machine was stopped while it
    was mounted. Until then its committed metadata (allocation bitmaps, directories) may live only
    in the journal, and debugfs, which never replays it, reads checksum errors or stale data."""
    process = subprocess.run(["e2fsck", "-E", "journal_only", "-y", str(fs_image)], capture_output=True, text=True,
                             check=False)
    if process.returncode >= 4:  # 1 and 2 mean something was repaired, which is what we asked for
        detail = (process.stderr or process.stdout).strip().splitlines()
        raise DiskReadError(f"{fs_image}: e2fsck could not replay the journal (status {process.returncode}): "
                            f"{detail[-1] if detail else 'no output'}")


def dump_ext4_tree(fs_image: Path, dest: Path, *, owners: bool = True) -> None:
    """Copy an ext2/3/4 image's whole tree into dest (absent or empty) with modes, owners, times.

    debugfs rdump copies directories, regular files and symlinks; it skips device nodes, FIFOs
    and sockets, turns hard links into copies and drops xattrs. Setting owners needs root: pass
    owners=False to accept files owned by whoever runs this instead of failing.
    """
    debugfs = shutil.which("debugfs", path=os.environ.get("PATH", "") + ":" + _SBIN)
    if debugfs is None:
        raise EnvironmentProblem("debugfs is not installed", hint="apt-get install e2fsprogs")
    if not fs_image.is_file():
        raise InputError(f"{fs_image}: no such filesystem image")
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise InputError(f"{dest}: dump_ext4_tree needs an empty destination folder")
    argv = [debugfs, "-R", f"rdump / {_debugfs_quote(dest.resolve())}", str(fs_image.resolve())]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=900, check=False)
    except subprocess.TimeoutExpired:
        raise EnvironmentProblem(f"debugfs took over 15 minutes to dump {fs_image}") from None
    # debugfs exits 0 when it cannot open the image or a file fails to copy: its stderr, past the
    # version banner, is the only reliable sign of trouble.
    problems = [line for line in result.stderr.splitlines()
                if line.strip() and not _DEBUGFS_BANNER.fullmatch(line)
                and (owners or "while changing ownership of" not in line)]
    if result.returncode != 0 or problems:
        detail = "; ".join(problems[-5:]) or f"exit status {result.returncode}"
        hint = "run as root, or pass owners=False" if any("ownership" in line for line in problems) else ""
        raise DiskReadError(f"{fs_image}: debugfs rdump failed: {detail}", hint=hint)
    if not any(dest.iterdir()):
        raise DiskReadError(f"{fs_image}: debugfs rdump copied nothing into {dest}")
