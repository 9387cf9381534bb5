"""formats.gpt on tables built here byte by byte: the lenient reads the diff makes, the checked one diskread makes."""

from __future__ import annotations

import io
import struct
import uuid
import zlib

import pytest

from bootkiln.formats import gpt
from bootkiln.formats.corrupt import CorruptArtifact

ESP = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
DISK_GUID = "11111111-2222-4333-8444-555555555555"
PART_GUID = "66666666-7777-4888-9999-aaaaaaaaaaaa"
SECTORS = 128  # a 64 KiB disk


def disk(*, entries_lba: int = 2, backup_lba: int = SECTORS - 1, name: str = "esp") -> bytearray:
    """A primary GPT with one partition (slot 2 of 4; slot 1 empty) and valid CRCs."""
    image = bytearray(SECTORS * 512)
    array = bytearray(4 * 128)
    struct.pack_into("<16s16sQQQ72s", array, 128, uuid.UUID(ESP).bytes_le, uuid.UUID(PART_GUID).bytes_le,
                     40, 79, 4, name.encode("utf-16-le"))
    header = bytearray(struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x10000, 92, 0, 0, 1, backup_lba, 34,
                                   SECTORS - 34, uuid.UUID(DISK_GUID).bytes_le, entries_lba, 4, 128,
                                   zlib.crc32(array)))
    struct.pack_into("<I", header, 16, zlib.crc32(header))
    image[512:512 + 92] = header
    image[2 * 512:2 * 512 + len(array)] = array
    return image


def test_read_primary_returns_used_entries_numbered_by_slot() -> None:
    (entry,) = gpt.read_primary(io.BytesIO(disk()))
    assert (entry.number, entry.name, entry.type_guid, entry.unique_guid) == (2, "esp", ESP, PART_GUID)
    assert (entry.first_lba, entry.last_lba, entry.attributes) == (40, 79, 4)


def test_lenient_reads_show_every_slot_and_the_whole_name_field() -> None:
    image = io.BytesIO(disk(name="esp\0junk"))
    header = gpt.read_header(image, 512)
    assert (header.disk_guid, header.backup_offset, header.entries_span) == (DISK_GUID, (SECTORS - 1) * 512,
                                                                            (1024, 1024 + 4 * 128))
    slots = gpt.read_entries(image, header)
    assert [slot.used for slot in slots] == [False, True, False, False]
    assert (slots[1].label, slots[1].name) == ("esp\0junk", "esp")


def test_read_header_without_a_signature_is_corrupt() -> None:
    with pytest.raises(CorruptArtifact, match="no GPT header at byte 1024"):
        gpt.read_header(io.BytesIO(disk()), 1024)


@pytest.mark.parametrize("lba", [SECTORS + 10, 1 << 54, (1 << 64) - 1])
def test_lbas_past_the_end_read_nothing_and_never_raise_from_seek(lba: int) -> None:
    # A damaged LBA times 512 can exceed what seek() accepts (ValueError, OSError): it must read as absent.
    with pytest.raises(CorruptArtifact, match=f"no GPT header at byte {lba * 512}"):
        gpt.read_header(io.BytesIO(disk()), lba * 512)
    image = io.BytesIO(disk(entries_lba=lba))
    assert gpt.read_entries(image, gpt.read_header(image, 512)) == []
    with pytest.raises(CorruptArtifact, match="GPT entry array runs past the end of the image"):
        gpt.read_primary(image)


def test_read_primary_checks_the_crcs() -> None:
    image = disk()
    image[2 * 512 + 128 + 56] ^= 1  # a letter of the name
    with pytest.raises(CorruptArtifact, match=r"entry array CRC32 mismatch"):
        gpt.read_primary(io.BytesIO(image))
    image = disk()
    image[512 + 40] ^= 1  # first usable LBA
    with pytest.raises(CorruptArtifact, match=r"GPT header CRC32 mismatch"):
        gpt.read_primary(io.BytesIO(image))
