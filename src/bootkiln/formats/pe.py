"""PE/COFF headers of EFI binaries (a kernel's EFI stub, shim, GRUB, a UKI): the machine, the
sections and the Authenticode certificate table, read without running anything.

Secure Boot firmware and shim check an Authenticode signature (a WIN_CERTIFICATE of type
PKCS_SIGNED_DATA in the certificate table, data directory 4). Whether one is present is the cheap,
early question bootkiln asks before a build; whether it verifies is sbverify's and the firmware's.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from bootkiln.formats.corrupt import CorruptArtifact

MACHINES = {0x8664: "x86_64", 0xAA64: "aarch64", 0x14C: "i386"}
_CERT_TABLE = 4
_WIN_CERT_REVISION_2 = 0x0200
_WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002


@dataclass(frozen=True)
class PeInfo:
    machine: str
    cert_offset: int  # file offset of the certificate table; 0 when there is none
    cert_size: int
    signatures: int  # PKCS#7 signed-data entries in the table
    dir_entry: int  # file offset of data directory 4 (the certificate table's entry)


def read_pe(data: bytes, what: str = "EFI binary") -> PeInfo:
    if data[:2] != b"MZ" or len(data) < 0x40:
        raise CorruptArtifact(f"{what}: not a PE file (no MZ header)")
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    if data[pe:pe + 4] != b"PE\0\0":
        raise CorruptArtifact(f"{what}: no PE signature at offset {pe:#x} (a kernel without an EFI stub?)")
    machine, _, _, _, _, optional_size, _ = struct.unpack_from("<HHIIIHH", data, pe + 4)
    optional = pe + 24
    magic = struct.unpack_from("<H", data, optional)[0]
    if magic not in (0x10B, 0x20B):
        raise CorruptArtifact(f"{what}: unknown PE optional header magic {magic:#x}")
    count_at, dirs_at = (optional + 92, optional + 96) if magic == 0x10B else (optional + 108, optional + 112)
    if dirs_at > optional + optional_size or count_at + 4 > len(data):
        raise CorruptArtifact(f"{what}: truncated PE optional header")
    count = struct.unpack_from("<I", data, count_at)[0]
    dir_entry = dirs_at + 8 * _CERT_TABLE
    cert_offset, cert_size = struct.unpack_from("<II", data, dir_entry) if count > _CERT_TABLE else (0, 0)
    if cert_offset + cert_size > len(data):
        raise CorruptArtifact(f"{what}: the certificate table runs past the end of the file")
    signatures, position = 0, cert_offset
    while cert_size and position + 8 <= cert_offset + cert_size:
        length, revision, kind = struct.unpack_from("<IHH", data, position)
        if length < 8:
            raise CorruptArtifact(f"{what}: a certificate entry of {length} bytes")
        if revision == _WIN_CERT_REVISION_2 and kind == _WIN_CERT_TYPE_PKCS_SIGNED_DATA:
            signatures += 1
        position += (length + 7) // 8 * 8
    return PeInfo(MACHINES.get(machine, f"{machine:#x}"), cert_offset, cert_size, signatures, dir_entry)


def without_signature(data: bytes) -> bytes:
    """The binary with its certificate table removed, as an unsigned build of it would be."""
    info = read_pe(data)
    if not info.cert_size:
        return data
    stripped = bytearray(data[:info.cert_offset])
    stripped[info.dir_entry:info.dir_entry + 8] = bytes(8)
    return bytes(stripped)
