"""diskread against a real installer-style disk: GPT, an LVM PV with a two-segment LV, ext4.

The fixture (data/lvm-disk.img.xz, rebuilt by data/make-lvm-disk.sh) was made by sfdisk, lvm2
and mke2fs, so these tests check the reader against the tools' own output, not its own idea of
the formats. Damaged variants are made by patching a fresh copy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import lzma
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from tests.conftest import component_missing
from tests.support import diskread
from tests.support.diskread import (
    CHUNK,
    DiskReadError,
    Partition,
    UnsupportedLayout,
    dump_ext4_tree,
    extract,
    probe_disk,
    read_gpt,
)
from tests.support.lvm import Segment, VolumeGroup, lv_extents, parse_metadata, read_lvm

from bootkiln.errors import InputError

FIXTURE = Path(__file__).parent / "data" / "lvm-disk.img.xz"
MIB = 1 << 20
LINUX_FS = "0fc63daf-8483-4772-8e79-3d69d8477de4"
LINUX_LVM = "e6d6d379-f507-44c2-a23c-238f2a3df928"
BIOS_BOOT = "21686148-6e6f-7449-6e65-656446494645"


@pytest.fixture
def debugfs() -> None:
    """debugfs (e2fsprogs) must be there: under CI=true its absence fails the test, never skips it."""
    if shutil.which("debugfs", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
        component_missing("debugfs", "e2fsprogs is not installed (tools/setup-host.sh installs it)")


def decompress(dest: Path) -> Path:
    with lzma.open(FIXTURE) as source, dest.open("wb") as out:
        while chunk := source.read(MIB):
            if chunk.count(0) == len(chunk):
                out.seek(len(chunk), os.SEEK_CUR)
            else:
                out.write(chunk)
        out.truncate()
    return dest


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pristine image, shared: tests that damage it use `fresh_disk`."""
    return decompress(tmp_path_factory.mktemp("disk") / "lvm-disk.img")


@pytest.fixture
def fresh_disk(tmp_path: Path) -> Path:
    return decompress(tmp_path / "lvm-disk.img")


def pv_partition(image: Path) -> Partition:
    return read_gpt(image)[2]


def volume_group(image: Path) -> VolumeGroup:
    part = pv_partition(image)
    vg = read_lvm(image, part.start, part.size)
    assert vg is not None
    return vg


def lvm_crc(data: bytes, crc: int = 0xF597A6CF) -> int:
    """LVM's calc_crc, bit by bit: independent of the zlib shortcut the reader takes."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
    return crc


def patch(image: Path, offset: int, data: bytes) -> None:
    with image.open("r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def read(image: Path, offset: int, length: int) -> bytes:
    with image.open("rb") as handle:
        handle.seek(offset)
        return handle.read(length)


class Mda:
    """The fixture's one metadata area: where its header is and where the text currently sits."""

    def __init__(self, image: Path) -> None:
        vg = volume_group(image)
        self.image = image
        self.base = vg.pv_offset + vg.label.metadata_areas[0][0]
        self.size = vg.label.metadata_areas[0][1]
        header = read(image, self.base, 512)
        self.text_offset, self.text_size, self.text_crc, _ = struct.unpack_from("<QQII", header, 40)
        self.text = read(image, self.base + self.text_offset, self.text_size)

    def rewrite(self, text: bytes, offset: int, *, fix_crc: bool = True) -> None:
        """Put text at ring offset `offset` (wrapping like LVM does) and point raw_locn[0] at it."""
        patch(self.image, self.base + self.text_offset, b"#" * self.text_size)  # no stale copy to find
        first = min(len(text), self.size - offset)
        patch(self.image, self.base + offset, text[:first])
        patch(self.image, self.base + 512, text[first:])
        crc = lvm_crc(text) if fix_crc else self.text_crc
        header = bytearray(read(self.image, self.base, 512))
        struct.pack_into("<QQII", header, 40, offset, len(text), crc, 0)
        struct.pack_into("<I", header, 0, lvm_crc(bytes(header[4:])))
        patch(self.image, self.base, bytes(header))


# --- GPT ---------------------------------------------------------------------------------------


def test_gpt_partitions_match_what_sfdisk_wrote(disk: Path) -> None:
    parts = read_gpt(disk)
    assert [(part.number, part.name, part.type_guid) for part in parts] == [
        (1, "bios", BIOS_BOOT), (2, "boot", LINUX_FS), (3, "lvm", LINUX_LVM)]
    assert [(part.start, part.size) for part in parts[:2]] == [(1 * MIB, 1 * MIB), (2 * MIB, 16 * MIB)]
    # sfdisk ends "the rest" on a 1 MiB boundary, short of the backup GPT in the last MiB.
    assert (parts[2].start, parts[2].size) == (18 * MIB, 77 * MIB)
    assert parts[2].last_lba == 95 * MIB // 512 - 1
    # Mixed-endian GUIDs decoded: these are the uuid= values in make-lvm-disk.sh.
    assert parts[0].unique_guid == "0a1b2c3d-4e5f-4607-8819-2a3b4c5d6e7f"
    assert parts[2].unique_guid == "2c3d4e5f-6071-4829-9a3b-4c5d6e7f8091"
    assert read(disk, parts[1].start + 1024 + 0x38, 2) == b"\x53\xef"  # ext4 superblock magic


def test_probe_reports_protective_mbr_and_gpt(disk: Path, tmp_path: Path) -> None:
    label = probe_disk(disk)
    assert label.mbr_signature and label.mbr_types == (0xEE,) and label.gpt and label.has_partition_table
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(4096))
    assert not probe_disk(blank).has_partition_table
    with pytest.raises(DiskReadError, match=r"blank\.img: no GPT header at LBA 1 \(found no partition table\)"):
        read_gpt(blank)


def test_corrupt_gpt_entries_are_refused(fresh_disk: Path) -> None:
    entries_lba = struct.unpack_from("<Q", read(fresh_disk, 512, 92), 72)[0]
    patch(fresh_disk, entries_lba * 512 + 56, "X".encode("utf-16-le"))  # first letter of "bios"
    with pytest.raises(DiskReadError, match=r"lvm-disk\.img: GPT partition entry array CRC32 mismatch"):
        read_gpt(fresh_disk)


def test_corrupt_gpt_header_is_refused(fresh_disk: Path) -> None:
    patch(fresh_disk, 512 + 40, b"\xff")  # first usable LBA
    with pytest.raises(DiskReadError, match=r"lvm-disk\.img: GPT header CRC32 mismatch"):
        read_gpt(fresh_disk)


def test_truncated_image_is_refused(fresh_disk: Path) -> None:
    os.truncate(fresh_disk, 64 * MIB)
    with pytest.raises(DiskReadError, match=r"partition 3 ends past the end of the image"):
        read_gpt(fresh_disk)


def test_entry_array_lba_past_anything_seekable_is_refused(fresh_disk: Path) -> None:
    # A consistent header (CRC fixed up) whose entry array LBA times 512 exceeds what seek() takes.
    header = bytearray(read(fresh_disk, 512, 92))
    struct.pack_into("<Q", header, 72, 1 << 54)
    struct.pack_into("<I", header, 16, 0)
    struct.pack_into("<I", header, 16, zlib.crc32(bytes(header)))
    patch(fresh_disk, 512, bytes(header))
    with pytest.raises(DiskReadError, match=r"lvm-disk\.img: GPT entry array runs past the end of the image"):
        read_gpt(fresh_disk)


# --- LVM ---------------------------------------------------------------------------------------


def test_volume_group_and_its_two_volumes(disk: Path) -> None:
    vg = volume_group(disk)
    assert (vg.name, vg.extent_size, vg.pv_name) == ("vgtest", 8192, "pv0")
    assert len(vg.uuid) == 38 and vg.uuid.count("-") == 6
    assert vg.label.pv_uuid == vg.pv("pv0").uuid
    assert vg.label.data_offset == 1 * MIB == vg.pv("pv0").pe_start * 512
    root, data = vg.lv("root"), vg.lv("data")
    assert "VISIBLE" in root.status and root.uuid != data.uuid
    # root was created before data and extended after it: extents 0-5 then 8-9 of the PV.
    assert [(s.start_extent, s.extent_count, s.type, s.pv, s.pv_start_extent) for s in root.segments] == [
        (0, 6, "striped", "pv0", 0), (6, 2, "striped", "pv0", 8)]
    assert [(s.start_extent, s.extent_count, s.pv_start_extent) for s in data.segments] == [(0, 2, 6)]
    assert root.extent_count * vg.extent_size * 512 == 32 * MIB


def test_lv_extents_are_absolute_image_ranges(disk: Path) -> None:
    vg = volume_group(disk)
    data_area = 18 * MIB + 1 * MIB  # partition start + pe_start
    assert lv_extents(vg, "root") == [(data_area, 24 * MIB), (data_area + 32 * MIB, 8 * MIB)]
    assert lv_extents(vg, "data") == [(data_area + 24 * MIB, 8 * MIB)]
    with pytest.raises(DiskReadError, match=r"VG vgtest has no logical volume 'swap' \(it has: root, data\)"):
        lv_extents(vg, "swap")


def test_partitions_without_lvm_give_none(disk: Path) -> None:
    bios, boot, _ = read_gpt(disk)
    assert read_lvm(disk, bios.start, bios.size) is None  # all zeros
    assert read_lvm(disk, boot.start, boot.size) is None  # ext4


def test_metadata_that_wraps_around_the_ring_buffer(fresh_disk: Path) -> None:
    mda = Mda(fresh_disk)
    mda.rewrite(mda.text, mda.size - 300)  # 300 bytes at the end, the rest after the header
    vg = volume_group(fresh_disk)
    assert [lv.name for lv in vg.logical_volumes] == ["root", "data"]
    assert lv_extents(vg, "root") == lv_extents(volume_group(decompress(fresh_disk.with_name("b.img"))), "root")


def test_garbage_metadata_is_a_clear_error(fresh_disk: Path) -> None:
    mda = Mda(fresh_disk)
    mda.rewrite(b"vgtest {\nid = \"x\"\nseqno = [1, \nlogical_volumes {\n}\n\0", mda.text_offset)
    with pytest.raises(DiskReadError, match=r"lvm-disk\.img: LVM metadata at byte \d+: cannot parse metadata "
                                            r"text: line 4: expected a number, a quoted string or '\['"):
        read_lvm(fresh_disk, pv_partition(fresh_disk).start, pv_partition(fresh_disk).size)


def test_metadata_with_a_bad_checksum_is_refused(fresh_disk: Path) -> None:
    mda = Mda(fresh_disk)
    mda.rewrite(mda.text.replace(b"extent_size = 8192", b"extent_size = 4096"), mda.text_offset, fix_crc=False)
    part = pv_partition(fresh_disk)
    with pytest.raises(DiskReadError, match="metadata text checksum mismatch"):
        read_lvm(fresh_disk, part.start, part.size)


def test_corrupt_label_is_refused(fresh_disk: Path) -> None:
    part = pv_partition(fresh_disk)
    patch(fresh_disk, part.start + 512 + 40, b"Z")  # inside the PV UUID
    with pytest.raises(DiskReadError, match=r"LVM label at byte \d+: checksum mismatch"):
        read_lvm(fresh_disk, part.start, part.size)


def test_layouts_we_cannot_map_are_refused(disk: Path) -> None:
    vg = volume_group(disk)
    root = vg.lv("root")

    def with_root_segment(segment: Segment) -> VolumeGroup:
        volume = dataclasses.replace(root, segments=(root.segments[0], segment))
        return dataclasses.replace(vg, logical_volumes=(volume, vg.lv("data")))

    second = root.segments[1]
    with pytest.raises(UnsupportedLayout, match=r"segment at extent 6 is on pv1, not on the PV in this partition"):
        lv_extents(with_root_segment(dataclasses.replace(second, pv="pv1")), "root")
    with pytest.raises(UnsupportedLayout, match=r"segment at extent 6 is raid1; only linear"):
        lv_extents(with_root_segment(Segment(6, 2, "raid1")), "root")
    with pytest.raises(UnsupportedLayout, match=r"is striped over 2 PVs"):
        lv_extents(with_root_segment(Segment(6, 2, "striped", stripe_count=2)), "root")
    with pytest.raises(DiskReadError, match=r"extents 18\+2 are past the PV's 19"):
        lv_extents(with_root_segment(dataclasses.replace(second, pv_start_extent=18)), "root")
    with pytest.raises(DiskReadError, match=r"segments leave a gap or overlap at extent 6"):
        lv_extents(with_root_segment(dataclasses.replace(second, start_extent=7)), "root")


def test_metadata_parser_handles_the_text_format() -> None:
    text = r'''
    vg0 {  # a comment { with braces }
        id = "a-b"
        name = "quote \" and backslash \\"
        ratio = 0.5
        negative = -3
        empty = []
        stripes = [
            "pv0", 0,
            "pv1", 12
        ]
        inner { deeper { x = 1 } }
    }
    version = 1
    '''
    assert parse_metadata(text) == {
        "vg0": {"id": "a-b", "name": 'quote " and backslash \\', "ratio": 0.5, "negative": -3, "empty": [],
                "stripes": ["pv0", 0, "pv1", 12], "inner": {"deeper": {"x": 1}}},
        "version": 1,
    }


@pytest.mark.parametrize(("text", "message"), [
    ("a {\n b = 1\n", "line 3: expected '}' closing section 'a', found end of text"),
    ("a = 1\na = 2", "line 2: 'a' appears twice"),
    ("a = unquoted", "line 1: expected a number, a quoted string or '\\[', found 'unquoted'"),
    ('a = "open', "line 1: unexpected '\"open'"),
    ("a = [1 2]", "line 1: expected ',' or '\\]' in a list, found '2'"),
    ("}", "line 1: expected a key or section name, found '}'"),
])
def test_metadata_parser_errors_say_where(text: str, message: str) -> None:
    with pytest.raises(DiskReadError, match=message):
        parse_metadata(text)


# --- extraction and ext4 -----------------------------------------------------------------------


def test_extract_concatenates_ranges_into_a_sparse_file(disk: Path, tmp_path: Path) -> None:
    vg = volume_group(disk)
    data = tmp_path / "data.bin"
    extract(disk, lv_extents(vg, "data"), data)
    assert data.stat().st_size == 8 * MIB
    assert data.read_bytes()[:17] == b"bootkiln data LV\n"
    # Only the first MiB holds anything, so only it takes space (a hole-less copy takes 8 MiB).
    assert data.stat().st_blocks * 512 <= CHUNK

    root = tmp_path / "root.ext4"
    extract(disk, lv_extents(vg, "root"), root)
    assert root.stat().st_size == 32 * MIB
    assert read(root, 1024 + 0x38, 2) == b"\x53\xef"


def test_extract_refuses_ranges_outside_the_image(disk: Path, tmp_path: Path) -> None:
    with pytest.raises(DiskReadError, match=r"range 100663296\+1 is outside the image"):
        extract(disk, [(0, 512), (96 * MIB, 1)], tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("debugfs")
def test_root_volume_dumps_to_the_installed_tree(disk: Path, tmp_path: Path) -> None:
    root = tmp_path / "root.ext4"
    extract(disk, lv_extents(volume_group(disk), "root"), root)
    tree = tmp_path / "tree with \"odd\" name"  # debugfs parses its request: quoting must hold
    as_root = os.geteuid() == 0
    dump_ext4_tree(root, tree, owners=as_root)
    assert (tree / "etc" / "hostname").read_text() == "fixture\n"
    assert (tree / "etc" / "hostname").stat().st_mode & 0o7777 == 0o644
    key = (tree / "secret" / "key").stat()
    assert key.st_mode & 0o7777 == 0o600
    if as_root:
        assert (key.st_uid, key.st_gid) == (0, 0)
    # /var/filler reaches into root's second segment: each 4 KiB block holds its own number.
    expected = hashlib.sha256(b"".join(b"%08d" % index * 512 for index in range(20 * 256))).hexdigest()
    assert hashlib.sha256((tree / "var" / "filler").read_bytes()).hexdigest() == expected


@pytest.mark.usefixtures("debugfs")
def test_debugfs_failures_are_not_silent(disk: Path, tmp_path: Path) -> None:
    not_ext4 = tmp_path / "data.bin"
    extract(disk, lv_extents(volume_group(disk), "data"), not_ext4)
    with pytest.raises(DiskReadError, match=r"data\.bin: debugfs rdump failed: .*while trying to open"):
        dump_ext4_tree(not_ext4, tmp_path / "tree")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").touch()
    with pytest.raises(InputError, match="needs an empty destination folder"):
        dump_ext4_tree(not_ext4, busy)


def test_replay_journal_accepts_a_clean_ext4_and_refuses_garbage(tmp_path: Path) -> None:
    image = tmp_path / "clean.ext4"
    with image.open("wb") as handle:
        handle.truncate(8 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    diskread.replay_journal(image)
    garbage = tmp_path / "garbage.img"
    garbage.write_bytes(b"\x01" * (1 << 20))
    with pytest.raises(diskread.DiskReadError, match="could not replay the journal"):
        diskread.replay_journal(garbage)
