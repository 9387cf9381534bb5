"""GPTs, primary and backup, field by field: the partition table inside a hybrid ISO's system area."""

from __future__ import annotations

import struct
from typing import BinaryIO

from bootkiln.formats import gpt
from bootkiln.formats.corrupt import CorruptArtifact
from bootkiln.verify.diff.report import Report, compare_fields


def _read(handle: BinaryIO, offset: int) -> tuple[dict[str, str], list[dict[str, str]], int, tuple[int, int]]:
    """A GPT header's fields, its partition entries, its backup's byte offset and where its entries lie."""
    header = gpt.read_header(handle, offset)
    entries = gpt.read_entries(handle, header)
    fields = {"disk GUID": header.disk_guid, "header CRC": f"0x{header.header_crc:08x}",
              "entries CRC": f"0x{header.entries_crc:08x}", "backup LBA": str(header.backup_lba),
              "usable LBAs": f"{header.first_usable}-{header.last_usable}",
              "entries": f"{header.entry_count} x {header.entry_size} bytes at LBA {header.entries_lba}"}
    parts = [{"type GUID": entry.type_guid, "unique GUID": entry.unique_guid, "first LBA": str(entry.first_lba),
              "last LBA": str(entry.last_lba), "attributes": f"0x{entry.attributes:x}", "name": repr(entry.label)}
             for entry in entries]
    return fields, parts, header.backup_offset, header.entries_span


def compare_gpt(label: str, name: str, handles: tuple[BinaryIO, BinaryIO], offsets: tuple[int, int],
                report: Report, covered: list[tuple[int, int]] | None) -> tuple[int, int] | None:
    """Compare two GPTs field by field; returns where their backups are, if both parse.

    `covered`, when given, gains the byte ranges the two tables occupy.
    """
    try:
        (fields_one, parts_one, backup_one, span_one) = _read(handles[0], offsets[0])
        (fields_two, parts_two, backup_two, span_two) = _read(handles[1], offsets[1])
    except (CorruptArtifact, struct.error) as exc:
        report.add(f"{label}: {name}", f"not comparable: {exc}")
        return None
    compare_fields(f"{label}: {name} header", fields_one, fields_two, report)
    for index, (part_one, part_two) in enumerate(zip(parts_one, parts_two, strict=False), start=1):
        if part_one["type GUID"] == part_two["type GUID"] == gpt.UNUSED:
            continue
        compare_fields(f"{label}: {name} partition {index}", part_one, part_two, report)
    if covered is not None:
        covered += [(offsets[0], offsets[0] + 512), span_one, span_two]
    return backup_one, backup_two
