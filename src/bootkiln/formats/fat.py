"""A minimal FAT12/16/32 reader: the boot sector, the directory tree with long names, cluster chains.

Enough to list an EFI system partition image and read its files, no more: nothing here writes.
Offsets that leave the image and chains that loop raise CorruptArtifact.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

from bootkiln.formats.corrupt import CorruptArtifact

_MAX_NESTING = 32


def is_fat(head: bytes) -> bool:
    """Whether the first sector (at least) of a file is a FAT boot sector."""
    if len(head) < 512 or head[510:512] != b"\x55\xaa":
        return False
    return head[0x36:0x3E] in (b"FAT12   ", b"FAT16   ", b"FAT     ") or head[0x52:0x5A] == b"FAT32   "


def lfn_checksum(short_name: bytes) -> int:
    """The checksum a long-name entry keeps of the 11-byte short name it belongs to."""
    total = 0
    for byte in short_name:
        total = (((total & 1) << 7) + (total >> 1) + byte) & 0xFF
    return total


def short_name(entry: bytes) -> str:
    """The 8.3 name of a 32-byte directory entry, as "NAME.EXT"."""
    raw = bytes([0xE5]) + entry[1:11] if entry[0] == 0x05 else entry[:11]
    base, extension = raw[:8].rstrip(b" ").decode("cp437"), raw[8:11].rstrip(b" ").decode("cp437")
    # Windows NT keeps the case of all-lower-case 8.3 names in these two bits; mtools writes them.
    if entry[12] & 0x08:
        base = base.lower()
    if entry[12] & 0x10:
        extension = extension.lower()
    return f"{base}.{extension}" if extension else base


class FatVolume:
    """One FAT volume read from an open file: boot sector fields, the FAT, and ways to walk the tree."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.size = handle.seek(0, os.SEEK_END)
        boot = self._read(0, 512)
        (self.sector_size, self.cluster_sectors, self.reserved_sectors, self.fat_count, self.root_entries,
         total16, self.media, fat_sectors16) = struct.unpack_from("<HBHBHHBH", boot, 11)
        self.hidden_sectors, total32 = struct.unpack_from("<II", boot, 28)
        if self.sector_size not in (512, 1024, 2048, 4096) or self.cluster_sectors not in (1, 2, 4, 8, 16, 32, 64, 128):
            raise CorruptArtifact(f"implausible FAT geometry: {self.sector_size} bytes/sector, "
                                  f"{self.cluster_sectors} sectors/cluster")
        if not self.reserved_sectors or not self.fat_count:
            raise CorruptArtifact("FAT boot sector declares no reserved sectors or no FATs")
        self.fat_sectors = fat_sectors16 or struct.unpack_from("<I", boot, 36)[0]
        self.total_sectors = total16 or total32
        root_sectors = (self.root_entries * 32 + self.sector_size - 1) // self.sector_size
        self.root_offset = (self.reserved_sectors + self.fat_count * self.fat_sectors) * self.sector_size
        self.data_offset = self.root_offset + root_sectors * self.sector_size
        clusters = (self.total_sectors - self.reserved_sectors - self.fat_count * self.fat_sectors
                    - root_sectors) // self.cluster_sectors
        # As Linux does: a zero 16-bit FAT size means FAT32 (mkfs.vfat -F 32 makes small ones too);
        # otherwise the cluster count, not the label, tells FAT12 from FAT16.
        self.bits = 32 if not fat_sectors16 else 12 if clusters < 4085 else 16
        self.cluster_count = clusters
        ebpb = 0x40 if self.bits == 32 else 0x24
        self.root_cluster = struct.unpack_from("<I", boot, 44)[0] if self.bits == 32 else 0
        self.root_size = self.root_entries * 32
        self.fat = self._read(self.reserved_sectors * self.sector_size, self.fat_sectors * self.sector_size)
        self.oem_name = boot[3:11]
        self.boot_signature = boot[ebpb + 2]
        # Signature 0x28 or 0x29: a volume serial follows; 0x29: a label and a file system type too.
        self.volume_serial: int | None = None
        self.volume_label: bytes | None = None
        self.file_system_type: bytes | None = None
        if self.boot_signature in (0x28, 0x29):
            self.volume_serial = struct.unpack_from("<I", boot, ebpb + 3)[0]
        if self.boot_signature == 0x29:
            self.volume_label = boot[ebpb + 7:ebpb + 18]
            self.file_system_type = boot[ebpb + 18:ebpb + 26]

    def _read(self, offset: int, size: int) -> bytes:
        if offset + size > self.size:
            raise CorruptArtifact(f"FAT image ends at byte {self.size}, {offset + size} needed")
        self.handle.seek(offset)
        return self.handle.read(size)

    def _next(self, cluster: int) -> int:
        if self.bits == 12:
            pair = int.from_bytes(self.fat[cluster + cluster // 2:cluster + cluster // 2 + 2], "little")
            return pair >> 4 if cluster & 1 else pair & 0xFFF
        if self.bits == 16:
            return int.from_bytes(self.fat[cluster * 2:cluster * 2 + 2], "little")
        return int.from_bytes(self.fat[cluster * 4:cluster * 4 + 4], "little") & 0x0FFFFFFF

    def chain(self, first: int) -> Iterator[int]:
        end = {12: 0xFF8, 16: 0xFFF8, 32: 0x0FFFFFF8}[self.bits]
        cluster, seen = first, set()
        while 2 <= cluster < end:
            if cluster in seen or cluster >= self.cluster_count + 2:
                raise CorruptArtifact(f"FAT cluster chain from {first} loops or leaves the volume at {cluster}")
            seen.add(cluster)
            yield cluster
            cluster = self._next(cluster)

    def _cluster(self, cluster: int) -> bytes:
        size = self.cluster_sectors * self.sector_size
        return self._read(self.data_offset + (cluster - 2) * size, size)

    def content(self, first: int, size: int) -> bytes:
        data = b"".join(self._cluster(cluster) for cluster in self.chain(first)) if first else b""
        if len(data) < size:
            raise CorruptArtifact(f"a FAT file of {size} bytes has only {len(data)} bytes of clusters")
        return data[:size]

    def walk(self) -> Iterator[tuple[str, bytes]]:
        """(path, 32-byte short entry) for every file and folder; the root's label entry as ('', entry)."""
        if self.bits == 32:
            root = b"".join(self._cluster(cluster) for cluster in self.chain(self.root_cluster))
        else:
            root = self._read(self.root_offset, self.root_size)
        yield from self._walk_dir(root, "", 0)

    def _walk_dir(self, data: bytes, parent: str, depth: int) -> Iterator[tuple[str, bytes]]:
        if depth > _MAX_NESTING:
            raise CorruptArtifact(f"FAT folders nest deeper than {_MAX_NESTING} levels at {parent}")
        long_parts: dict[int, bytes] = {}
        long_checksum = -1
        for offset in range(0, len(data) - 31, 32):
            entry = data[offset:offset + 32]
            if entry[0] == 0:
                return
            attributes = entry[11]
            if entry[0] == 0xE5:
                long_parts = {}
                continue
            if attributes & 0x3F == 0x0F:
                if entry[0] & 0x40:
                    long_parts, long_checksum = {}, entry[13]
                long_parts[entry[0] & 0x1F] = entry[1:11] + entry[14:26] + entry[28:32]
                continue
            name = short_name(entry)
            if long_parts and long_checksum == lfn_checksum(entry[:11]):
                raw = b"".join(long_parts[index] for index in sorted(long_parts))
                name = raw.decode("utf-16-le", "replace").split("\0", 1)[0]
            long_parts = {}
            if attributes & 0x08 and not attributes & 0x10:
                if not parent:
                    yield "", entry
                continue
            if name in (".", ".."):
                continue
            path = f"{parent}{name}"
            yield path, entry
            if attributes & 0x10:
                first = self.first_cluster(entry)
                children = b"".join(self._cluster(cluster) for cluster in self.chain(first)) if first else b""
                yield from self._walk_dir(children, path + "/", depth + 1)

    def first_cluster(self, entry: bytes) -> int:
        high = int.from_bytes(entry[20:22], "little") if self.bits == 32 else 0
        return (high << 16) | int.from_bytes(entry[26:28], "little")
