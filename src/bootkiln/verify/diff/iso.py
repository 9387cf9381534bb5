"""ISO 9660 images, read through pycdlib: volume descriptors, El Torito boot catalog, directory
records of the Rock Ridge (or plain) and Joliet trees, file contents, and the system area in front
of it all (the hybrid MBR and GPT).
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
from pathlib import Path
from typing import Any

import pycdlib

from bootkiln.verify.diff.binary import copy_stream, runs, sha256_stream, span
from bootkiln.verify.diff.gpt import compare_gpt
from bootkiln.verify.diff.report import Context, Entry, Extractor, Report, compare_entries, compare_fields

_MBR_REGIONS = [(0x000, 0x1B0, "boot code"), (0x1B0, 0x1B8, "isohybrid boot file address"),
                (0x1B8, 0x1BC, "disk signature"), (0x1BC, 0x1BE, "reserved"),
                *((0x1BE + 16 * index, 0x1CE + 16 * index, f"partition entry {index + 1}") for index in range(4)),
                (0x1FE, 0x200, "boot signature")]
SYSTEM_AREA = 32 * 1024


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


def _eltorito_entries(iso: Any, extents: dict[int, str]) -> list[Entry]:
    """The boot catalog's validation entry, initial entry, section headers and section entries."""
    catalog = iso.eltorito_boot_catalog
    if catalog is None:
        return []
    validation = catalog.validation_entry
    entries = [Entry("validation entry", {"platform id": f"0x{validation.platform_id:02x}",
                                          "id string": repr(validation.id_string.rstrip(b"\0"))})]
    boot_entries = [("initial entry", catalog.initial_entry)]
    for number, section in enumerate(catalog.sections, start=1):
        entries.append(Entry(f"section {number}", {"platform id": f"0x{section.platform_id:02x}",
                                                   "entries": str(len(section.section_entries)),
                                                   "id string": repr(section.id_string.rstrip(b"\0"))}))
        boot_entries += [(f"section {number} entry {index}", entry)
                         for index, entry in enumerate(section.section_entries, start=1)]
    for name, entry in boot_entries:
        entries.append(Entry(name, {
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


def _iso_entries(iso: Any, tree: str, *, contents: bool = True) -> tuple[list[Entry], dict[str, int]]:
    """Every directory record of one tree ("rr_path", "joliet_path" or "iso_path"), and its extents."""
    entries: list[Entry] = []
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
                        digest = sha256_stream(stream)
            extents[path] = record.extent_location()
            entries.append(Entry(path, fields, digest, record.data_length))
    return entries, extents


def compare_iso(label: str, first: Path, second: Path, report: Report, ctx: Context) -> None:
    with contextlib.ExitStack() as stack:
        isos = []
        for path in (first, second):
            iso = pycdlib.PyCdlib()
            iso.open(str(path))
            stack.callback(iso.close)
            isos.append(iso)
        one, two = isos
        compare_fields(f"{label}: primary volume descriptor", _vd_fields(one.pvd), _vd_fields(two.pvd), report)
        if one.joliet_vd is not None and two.joliet_vd is not None:
            compare_fields(f"{label}: Joliet volume descriptor", _vd_fields(one.joliet_vd),
                           _vd_fields(two.joliet_vd), report)
        trees = ["rr_path" if iso.has_rock_ridge() else "iso_path" for iso in isos]
        if trees[0] != trees[1]:
            report.add(label, f"Rock Ridge {'present' if trees[0] == 'rr_path' else 'absent'} vs "
                              f"{'present' if trees[1] == 'rr_path' else 'absent'}")
            trees = ["iso_path", "iso_path"]
        entries_one, extents_one = _iso_entries(one, trees[0])
        entries_two, extents_two = _iso_entries(two, trees[1])
        compare_entries(label, _eltorito_entries(one, {extent: path for path, extent in extents_one.items()}),
                        _eltorito_entries(two, {extent: path for path, extent in extents_two.items()}), report, ctx,
                        prefix="El Torito ")
        _compare_system_area(label, first, second, report)

        def extractor(iso: Any, tree: str) -> Extractor:
            def extract(name: str, destination: Path) -> None:
                with iso.open_file_from_iso(**{tree: name}) as stream:
                    copy_stream(stream, destination)
            return extract

        compare_entries(label, entries_one, entries_two, report, ctx,
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
            compare_entries(label, joliet_one, joliet_two, report, ctx, prefix="Joliet ")


def _region_names(start: int, end: int) -> str:
    return ", ".join(name for low, high, name in _MBR_REGIONS if low < end and start < high)


def _compare_system_area(label: str, first: Path, second: Path, report: Report) -> None:
    with first.open("rb") as handle_one, second.open("rb") as handle_two:
        area_one, area_two = handle_one.read(SYSTEM_AREA), handle_two.read(SYSTEM_AREA)
        if area_one == area_two:
            return
        where = f"{label}: system area"
        for start, end in runs(area_one[:512], area_two[:512])[1]:
            at = f"byte differs at 0x{start:x}" if end - start == 1 else f"bytes differ at 0x{start:x}-0x{end - 1:x}"
            report.add(where, f"MBR {at} ({_region_names(start, end)})")
        covered = [(0, 512)]
        if area_one[512:520] == b"EFI PART" and area_two[512:520] == b"EFI PART":
            backups = compare_gpt(label, "GPT", (handle_one, handle_two), (512, 512), report, covered)
            if backups is not None:
                compare_gpt(label, "backup GPT", (handle_one, handle_two), backups, report, None)
        for start, end in runs(area_one[512:], area_two[512:], 512)[1]:
            if not any(low <= start and end <= high for low, high in covered):
                report.add(where, f"{span(start, end)} (outside the MBR and GPT)")
