"""A GPT (GUID partition table) reader for disks with 512-byte sectors.

Two kinds of caller read GPTs, and both come here. The artifact diff shows whatever a table holds,
damaged or not, field by field: `read_header` and `read_entries` take what they find and refuse only
what cannot be read at all. The installer tests' disk reader trusts a table only when its CRCs and
ranges check out, as firmware would: `read_primary` makes those checks.
"""

from __future__ import annotations

import os
import struct
import uuid
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

from bootkiln.formats.corrupt import CorruptArtifact

SECTOR = 512
SIGNATURE = b"EFI PART"
# Signature, revision, header size, header CRC, reserved, my LBA, alternate LBA, first and last
# usable LBA, disk GUID, entry array LBA, entry count, entry size, entry array CRC.
HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
# Type GUID, unique GUID, first LBA, last LBA (inclusive), attributes, UTF-16LE name.
ENTRY = struct.Struct("<16s16sQQQ72s")
UNUSED = "00000000-0000-0000-0000-000000000000"  # the type GUID of an empty slot
_MAX_ARRAY = 1 << 20  # the spec's minimum is 16 KiB; a checked array near this is corrupt
_MAX_SLOTS = 4096  # more entries, or larger ones, than any real table: not worth reading unchecked
_MAX_ENTRY_SIZE = 4096


def guid(raw: bytes) -> str:
    # GPT stores the first three GUID fields little-endian and the last two as bytes.
    return str(uuid.UUID(bytes_le=raw))


@dataclass(frozen=True)
class GptHeader:
    offset: int  # the byte it was read from: 512 for the primary header
    header_size: int
    header_crc: int
    my_lba: int
    backup_lba: int  # the "alternate" LBA: where the other copy of the header is
    first_usable: int
    last_usable: int
    disk_guid: str
    entries_lba: int
    entry_count: int
    entry_size: int
    entries_crc: int
    raw: bytes = field(repr=False)  # the sector as read, for the CRC

    @property
    def backup_offset(self) -> int:
        return self.backup_lba * SECTOR

    @property
    def entries_span(self) -> tuple[int, int]:
        """The [start, end) bytes of the entry array."""
        start = self.entries_lba * SECTOR
        return start, start + self.entry_count * self.entry_size

    def crc_matches(self) -> bool:
        blanked = self.raw[:16] + b"\0\0\0\0" + self.raw[20:self.header_size]
        return zlib.crc32(blanked) == self.header_crc


@dataclass(frozen=True)
class GptEntry:
    """One slot of the entry array, used or not."""

    number: int  # 1-based index in the array, as Linux names partitions (sda3 is number 3)
    type_guid: str  # lowercase canonical, e.g. "0fc63daf-8483-4772-8e79-3d69d8477de4"
    unique_guid: str
    first_lba: int
    last_lba: int  # inclusive, as GPT stores it
    attributes: int  # bit 2 is "legacy BIOS bootable"
    label: str  # the whole name field, trailing NULs removed: junk after a NUL stays visible

    @property
    def used(self) -> bool:
        return self.type_guid != UNUSED

    @property
    def name(self) -> str:
        return self.label.split("\0", 1)[0].strip()


def parse_header(raw: bytes, offset: int) -> GptHeader:
    """The fields of a header whose signature the caller has seen; `raw` holds at least HEADER.size bytes."""
    (_, _, header_size, header_crc, _, my_lba, backup_lba, first_usable, last_usable, disk_guid, entries_lba,
     count, entry_size, entries_crc) = HEADER.unpack_from(raw)
    return GptHeader(offset, header_size, header_crc, my_lba, backup_lba, first_usable, last_usable, guid(disk_guid),
                     entries_lba, count, entry_size, entries_crc, raw)


def parse_entries(array: bytes, entry_size: int) -> list[GptEntry]:
    """Every whole slot of an entry array (entry_size at least ENTRY.size)."""
    entries = []
    for index in range(len(array) // entry_size):
        type_raw, unique_raw, first, last, attributes, name_raw = ENTRY.unpack_from(array, index * entry_size)
        label = name_raw.decode("utf-16-le", "replace").rstrip("\0")
        entries.append(GptEntry(index + 1, guid(type_raw), guid(unique_raw), first, last, attributes, label))
    return entries


def read_header(handle: BinaryIO, offset: int) -> GptHeader:
    """The header at `offset`, unchecked beyond its signature."""
    # An offset past the end reads nothing; one past what seek takes (a damaged LBA) must not raise.
    raw = b""
    if offset < handle.seek(0, os.SEEK_END):
        handle.seek(offset)
        raw = handle.read(SECTOR)
    if raw[:8] != SIGNATURE or len(raw) < HEADER.size:
        raise CorruptArtifact(f"no GPT header at byte {offset}")
    return parse_header(raw, offset)


def read_entries(handle: BinaryIO, header: GptHeader) -> list[GptEntry]:
    """The slots of a header's entry array, as many as the file holds; CRCs are not checked."""
    count, entry_size = header.entry_count, header.entry_size
    if not ENTRY.size <= entry_size <= _MAX_ENTRY_SIZE or count > _MAX_SLOTS:
        raise CorruptArtifact(f"GPT at byte {header.offset} declares {count} entries of {entry_size} bytes")
    start, end = header.entries_span
    if start >= handle.seek(0, os.SEEK_END):
        return []
    handle.seek(start)
    return parse_entries(handle.read(end - start), entry_size)


def read_primary(handle: BinaryIO) -> list[GptEntry]:
    """The used entries of the primary GPT, in array order, once its CRCs and ranges check out."""
    image_size = handle.seek(0, os.SEEK_END)
    handle.seek(SECTOR)
    raw = handle.read(SECTOR)
    if raw[:8] != SIGNATURE:
        raise CorruptArtifact("no GPT header at LBA 1")
    if len(raw) < HEADER.size:
        raise CorruptArtifact("truncated GPT header")
    header = parse_header(raw, SECTOR)
    if not HEADER.size <= header.header_size <= SECTOR:
        raise CorruptArtifact(f"GPT header size {header.header_size} is out of range")
    if not header.crc_matches():
        raise CorruptArtifact("GPT header CRC32 mismatch (corrupt primary GPT header)")
    if header.my_lba != 1:
        raise CorruptArtifact(f"primary GPT header claims to be at LBA {header.my_lba}, not 1")
    count, entry_size = header.entry_count, header.entry_size
    if entry_size < ENTRY.size or entry_size % 8 or count * entry_size > _MAX_ARRAY:
        raise CorruptArtifact(f"implausible GPT entry array ({count} entries of {entry_size} bytes)")
    start, end = header.entries_span
    if end > image_size:  # checked before seeking: a damaged LBA can lie past what seek takes
        raise CorruptArtifact("GPT entry array runs past the end of the image")
    handle.seek(start)
    array = handle.read(end - start)
    if zlib.crc32(array) != header.entries_crc:
        raise CorruptArtifact("GPT partition entry array CRC32 mismatch (corrupt entries)")
    used = [entry for entry in parse_entries(array, entry_size) if entry.used]  # numbering counts unused slots
    for entry in used:
        _check_bounds(entry, header, image_size)
    return used


def _check_bounds(entry: GptEntry, header: GptHeader, image_size: int) -> None:
    first, last = entry.first_lba, entry.last_lba
    if not header.first_usable <= first <= last <= header.last_usable:
        raise CorruptArtifact(f"GPT partition {entry.number} spans LBA {first}-{last}, "
                              f"outside the usable LBA {header.first_usable}-{header.last_usable}")
    if (last + 1) * SECTOR > image_size:
        raise CorruptArtifact(f"GPT partition {entry.number} ends past the end of the image "
                              f"({(last + 1) * SECTOR} > {image_size} bytes); is the image truncated?")
