"""LVM2 physical volumes read straight from a disk image: the label, the metadata text and its parser,
and where each logical volume's extents lie. No lvm tools, no device mapper, no loop devices."""

from __future__ import annotations

import itertools
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from tests.support.diskread import SECTOR, DiskReadError, UnsupportedLayout, _read_at

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
