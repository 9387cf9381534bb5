"""FAT images (the EFI system partition): boot sector fields, then every file and folder entry."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from bootkiln.formats.fat import FatVolume, short_name
from bootkiln.verify.diff.report import Context, Entry, Extractor, Report, compare_entries, compare_fields


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


def _boot_fields(fat: FatVolume) -> dict[str, str]:
    fields = {
        "OEM name": repr(fat.oem_name.decode("latin-1")), "FAT type": f"FAT{fat.bits}",
        "bytes per sector": str(fat.sector_size), "sectors per cluster": str(fat.cluster_sectors),
        "reserved sectors": str(fat.reserved_sectors), "FAT count": str(fat.fat_count),
        "root entries": str(fat.root_entries), "total sectors": str(fat.total_sectors), "media": f"0x{fat.media:02x}",
        "sectors per FAT": str(fat.fat_sectors), "hidden sectors": str(fat.hidden_sectors),
        "extended boot signature": f"0x{fat.boot_signature:02x}"}
    if fat.volume_serial is not None:
        fields["volume serial"] = f"0x{fat.volume_serial:08X}"
    if fat.volume_label is not None:
        fields["volume label"] = repr(fat.volume_label.decode("latin-1").rstrip())
    if fat.file_system_type is not None:
        fields["file system type"] = repr(fat.file_system_type.decode("latin-1").rstrip())
    return fields


def _fat_entries(fat: FatVolume) -> tuple[list[Entry], dict[str, tuple[int, int]], dict[str, str]]:
    entries: list[Entry] = []
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
                  "size": str(size), "8.3 name": repr(short_name(entry)),
                  "creation time": _fat_date(create_date, create_time, entry[13]),
                  "access date": _fat_date(access_date), "write time": _fat_date(write_date, write_time),
                  "first cluster": str(first)}
        digest = None
        if not is_dir:
            digest = hashlib.sha256(fat.content(first, size)).hexdigest()
            files[path] = (first, size)
        entries.append(Entry(path, fields, digest, size))
    return entries, files, label


def compare_fat(label: str, first: Path, second: Path, report: Report, ctx: Context) -> None:
    with first.open("rb") as handle_one, second.open("rb") as handle_two:
        fat_one, fat_two = FatVolume(handle_one), FatVolume(handle_two)
        (entries_one, files_one, label_one), (entries_two, files_two, label_two) = (_fat_entries(fat_one),
                                                                                    _fat_entries(fat_two))
        compare_fields(f"{label}: FAT boot sector", {**_boot_fields(fat_one), **label_one},
                       {**_boot_fields(fat_two), **label_two}, report)

        def extractor(fat: FatVolume, files: dict[str, tuple[int, int]]) -> Extractor:
            def extract(name: str, destination: Path) -> None:
                destination.write_bytes(fat.content(*files[name]))
            return extract

        compare_entries(label, entries_one, entries_two, report, ctx, prefix="FAT entry ",
                        extract=(extractor(fat_one, files_one), extractor(fat_two, files_two)))
