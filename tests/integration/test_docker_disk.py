"""build-disk for real: a sparse GPT image with BIOS boot, ESP and ext4 root, made without loop devices."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

from bootkiln.stages.base import StageResult
from tests.fixtures import SessionBuild, invoke

BIOS_BOOT = uuid.UUID("21686148-6449-6E6F-744E-656564454649")
ESP = uuid.UUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
LINUX_ROOT_X86_64 = uuid.UUID("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709")


def gpt_partitions(image: Path) -> tuple[uuid.UUID, list[tuple[uuid.UUID, uuid.UUID, int, int]]]:
    with image.open("rb") as handle:
        handle.seek(512)
        header = handle.read(92)
        assert header[:8] == b"EFI PART"
        disk_guid = uuid.UUID(bytes_le=header[56:72])
        entries_lba, count, size = struct.unpack_from("<QII", header, 72)
        handle.seek(entries_lba * 512)
        table = handle.read(count * size)
    parts = []
    for index in range(count):
        entry = table[index * size:(index + 1) * size]
        kind = uuid.UUID(bytes_le=entry[:16])
        if kind.int:
            first, last = struct.unpack_from("<QQ", entry, 32)
            parts.append((kind, uuid.UUID(bytes_le=entry[16:32]), first, last))
    return disk_guid, parts


def test_disk_layout_matches_its_recorded_identifiers(default_disk: StageResult) -> None:
    image = default_disk.artifact("disk.img")
    ids = default_disk.metadata["ids"]
    disk_guid, parts = gpt_partitions(image)
    assert str(disk_guid) == ids["disk_guid"]
    assert [kind for kind, _, _, _ in parts] == [BIOS_BOOT, ESP, LINUX_ROOT_X86_64]
    assert [str(part) for _, part, _, _ in parts] == [ids["bios_boot_partuuid"], ids["esp_partuuid"],
                                                      ids["root_partuuid"]]
    data = image.open("rb")
    with data:
        mbr = data.read(512)
        assert mbr[510:512] == b"\x55\xaa" and mbr[450] == 0xEE, "protective MBR"
        assert mbr[0x5C:0x64] == struct.pack("<Q", parts[0][2]), "boot.img points at core.img"
        root_start = parts[2][2] * 512
        data.seek(root_start + 1024)
        superblock = data.read(1024)
        assert superblock[0x38:0x3A] == b"\x53\xef", "an ext4 superblock"
        assert str(uuid.UUID(bytes=superblock[0x68:0x78])) == ids["root_fs_uuid"]
        data.seek(parts[1][2] * 512)
        boot_sector = data.read(512)
        assert boot_sector[0x52:0x5A] == b"FAT32   "
        assert boot_sector[0x43:0x47] == bytes.fromhex(ids["esp_serial"])[::-1]


def test_disk_image_stays_sparse_in_the_cache_and_out(default_disk: StageResult, session_build: SessionBuild) -> None:
    for path in (default_disk.artifact("disk.img"), session_build.out() / "disk.img"):
        stat = path.stat()
        assert stat.st_size == 1 << 30
        assert stat.st_blocks * 512 < stat.st_size // 3, "holes must stay holes"


def test_disk_too_small_for_the_rootfs_fails_clearly(default_disk: StageResult, session_build: SessionBuild,
                                                      tmp_path: Path) -> None:
    profile = tmp_path / "tiny.toml"
    profile.write_text('[disk]\nsize = "128MiB"\n')
    result = invoke(["build-disk", "--profile", str(profile)], env=session_build.env())
    assert result.returncode == 2, result.output[-3000:]
    assert "key 'disk.size': 128 MiB leaves 60 MiB for the third partition" in result.output
    assert "set disk.size to at least" in result.output
