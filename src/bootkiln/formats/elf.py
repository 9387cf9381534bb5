"""An ELF reader: the file header and the section headers with their names, for 32- and 64-bit files
of either byte order. Section contents are left where they are: callers read them by offset.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from bootkiln.formats.corrupt import CorruptArtifact

SHT_NOBITS = 8  # a section that takes room in memory but none in the file (.bss)
SECTION_TYPES = {0: "NULL", 1: "PROGBITS", 2: "SYMTAB", 3: "STRTAB", 4: "RELA", 5: "HASH", 6: "DYNAMIC",
                 7: "NOTE", 8: "NOBITS", 9: "REL", 11: "DYNSYM", 14: "INIT_ARRAY", 15: "FINI_ARRAY"}


@dataclass(frozen=True)
class ElfHeader:
    type: int
    machine: int
    entry: int
    flags: int
    program_count: int
    section_count: int  # the real count, also when it is too large for the header and sits in section 0


@dataclass(frozen=True)
class ElfSection:
    index: int
    name: str  # from the section name table, latin-1; "" when it has none
    type: int
    flags: int
    offset: int
    size: int


def read_elf(handle: BinaryIO) -> tuple[ElfHeader, list[ElfSection]]:
    """The header and every section but the null one at index 0.

    The section headers and the name table must lie inside the file; the sections' contents are not checked.
    """
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
    header = ElfHeader(elf_type, machine, entry, flags, program_count, section_count)
    names = b""
    if headers:
        if names_index >= len(headers):
            raise CorruptArtifact(f"ELF section name table index {names_index} is out of range")
        names_offset, names_size = headers[names_index][4], headers[names_index][5]
        if names_offset + names_size > size:
            raise CorruptArtifact("ELF section name table lies past the end of the file")
        handle.seek(names_offset)
        names = handle.read(names_size)
    sections = [ElfSection(index, names[name_at:].split(b"\0", 1)[0].decode("latin-1"), kind, section_flags,
                           offset, length)
                for index, (name_at, kind, section_flags, _, offset, length, *_) in enumerate(headers) if index]
    return header, sections
