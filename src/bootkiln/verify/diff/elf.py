"""ELF files: header fields, sections by name (with where to look when one differs), and the printable
strings only one build has, as `strings -n 8` would list them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import BinaryIO

from bootkiln.formats.corrupt import CorruptArtifact
from bootkiln.formats.elf import SECTION_TYPES, SHT_NOBITS, read_elf
from bootkiln.verify.diff.binary import sha256_stream
from bootkiln.verify.diff.report import Context, Entry, Report, compare_entries, compare_fields, unique

STRINGS_MIN = 8
STRINGS_SHOWN = 10
STRINGS_MAX_FILE = 64 << 20

_PRINTABLE = re.compile(rb"[\x20-\x7e\t]{%d,}" % STRINGS_MIN)
# Leads shown next to a differing section: where builds leak their date, host or paths, and what follows.
_LEAKY = "; embedded dates, host names or paths often live here"
_SECTION_HINTS = {".rodata": _LEAKY, ".data": _LEAKY, ".comment": _LEAKY, ".debug_str": _LEAKY,
                  ".debug_line": _LEAKY, ".note.gnu.build-id": "; the build ID hashes the other sections: look there",
                  ".gnu_debuglink": "; it names the debug file by build ID: look at the other sections"}


def _elf(handle: BinaryIO, size: int) -> tuple[dict[str, str], list[Entry]]:
    """The ELF header's fields and one entry per section (name, type, flags, size, content sha256)."""
    header, sections = read_elf(handle)
    fields = {"type": str(header.type), "machine": str(header.machine), "entry point": f"0x{header.entry:x}",
              "flags": f"0x{header.flags:x}", "program headers": str(header.program_count),
              "sections": str(header.section_count)}
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    for section in sections:
        name = unique(section.name or f"[{section.index}]", seen)
        digest = None
        if section.type != SHT_NOBITS:
            if section.offset + section.size > size:
                raise CorruptArtifact(f"ELF section {name} lies past the end of the file")
            handle.seek(section.offset)
            digest = sha256_stream(handle, section.size)
        entries.append(Entry(name, {"type": SECTION_TYPES.get(section.type, f"0x{section.type:x}"),
                                    "flags": f"0x{section.flags:x}", "size": str(section.size)},
                             digest, section.size))
    return fields, entries


def _strings(path: Path) -> dict[bytes, None]:
    # Distinct printable runs in order of first appearance, as `strings -n 8` would list them.
    return dict.fromkeys(match.group() for match in _PRINTABLE.finditer(path.read_bytes()))


def compare_elf(label: str, first: Path, second: Path, report: Report, ctx: Context) -> None:
    with first.open("rb") as handle_one, second.open("rb") as handle_two:
        (fields_one, sections_one) = _elf(handle_one, first.stat().st_size)
        (fields_two, sections_two) = _elf(handle_two, second.stat().st_size)
    compare_fields(f"{label}: ELF header", fields_one, fields_two, report)

    compare_entries(label, sections_one, sections_two, report, ctx, prefix="section ",
                    hint=lambda name: _SECTION_HINTS.get(name, ""))
    if max(first.stat().st_size, second.stat().st_size) > STRINGS_MAX_FILE:
        return
    strings_one, strings_two = _strings(first), _strings(second)
    for side, mine, theirs in (("first", strings_one, strings_two), ("second", strings_two, strings_one)):
        for text in [text for text in mine if text not in theirs][:STRINGS_SHOWN]:
            report.add(f"{label}: strings", f"only in {side} build: {text.decode('ascii')[:200]!r}")
