"""The structural diff of two builds: each artifact kind names the member and the field that differ."""

from __future__ import annotations

import gzip
import io
import re
import shutil
import struct
import tarfile
import time
from pathlib import Path

import pycdlib
import pytest

from bootkiln.formats.cpio import Compression, CpioEntry, compress, write_newc
from bootkiln.formats.iso import pinned_pycdlib
from bootkiln.verify.diff import Difference, compare_artifacts, describe

EPOCH = 1700000000


def wheres(differences: list[Difference]) -> list[str]:
    return [item.where for item in differences]


def find(differences: list[Difference], where: str) -> list[str]:
    """The `what` of every difference reported at exactly `where`."""
    return [item.what for item in differences if item.where == where]


# ------------------------------------------------------------------------------------- tar


def write_tar(path: Path, members: list[tuple[str, bytes, int, int, dict[str, str]]]) -> None:
    """members: (name, content, mode, mtime, pax headers)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for name, content, mode, mtime, pax in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.pax_headers = len(content), mode, mtime, pax
            archive.addfile(info, io.BytesIO(content))


def test_tar_members_fields_and_order(tmp_path: Path) -> None:
    xattr = "SCHILY.xattr.user.origin"
    write_tar(tmp_path / "one.tar", [
        ("./etc/machine-id", b"abc\n", 0o644, EPOCH, {}),
        ("./etc/hostname", b"rescue\n", 0o644, EPOCH, {}),
        ("./bin/tool", b"\x7fELF", 0o755, EPOCH, {xattr: "one"}),
        ("./a", b"", 0o644, EPOCH, {}),
        ("./b", b"", 0o644, EPOCH, {}),
    ])
    write_tar(tmp_path / "two.tar", [
        ("./etc/machine-id", b"xyz\n", 0o644, EPOCH, {}),
        ("./etc/hostname", b"rescue\n", 0o644, EPOCH + 60, {}),
        ("./bin/tool", b"\x7fELF", 0o775, EPOCH, {xattr: "two"}),
        ("./b", b"", 0o644, EPOCH, {}),
        ("./a", b"", 0o644, EPOCH, {}),
        ("./extra", b"new", 0o644, EPOCH, {}),
    ])
    found = compare_artifacts("rootfs.tar", tmp_path / "one.tar", tmp_path / "two.tar")
    content = find(found, "rootfs.tar: ./etc/machine-id")
    assert any(what.startswith("content differs (sha256 ") for what in content)
    assert "-abc" in content and "+xyz" in content  # the member itself is text, so it is diffed too
    assert find(found, "rootfs.tar: ./etc/hostname") == [f"mtime {EPOCH} vs {EPOCH + 60}"]
    assert find(found, "rootfs.tar: ./bin/tool") == ["mode 0755 vs 0775", f"pax header {xattr} 'one' vs 'two'"]
    assert find(found, "rootfs.tar: ./extra") == ["only in second build"]
    assert find(found, "rootfs.tar: member order") == ["differs from position 3: ./a vs ./b"]


def test_tar_members_missing_from_the_second_build(tmp_path: Path) -> None:
    write_tar(tmp_path / "one.tar", [("./x", b"1", 0o644, EPOCH, {}), ("./gone", b"2", 0o644, EPOCH, {})])
    write_tar(tmp_path / "two.tar", [("./x", b"1", 0o644, EPOCH, {})])
    found = compare_artifacts("modules.tar", tmp_path / "one.tar", tmp_path / "two.tar")
    assert found == [Difference("modules.tar: ./gone", "only in first build")]


def test_identical_files_give_nothing(tmp_path: Path) -> None:
    write_tar(tmp_path / "one.tar", [("./x", b"1", 0o644, EPOCH, {})])
    shutil.copyfile(tmp_path / "one.tar", tmp_path / "two.tar")
    assert compare_artifacts("rootfs.tar", tmp_path / "one.tar", tmp_path / "two.tar") == []


# ------------------------------------------------------------------------------------- cpio


def initramfs(path: Path, *, init: bytes, mtime: int, method: Compression) -> Path:
    entries = [CpioEntry("init", "file", 0o755, init), CpioEntry("bin/sh", "symlink", 0o777, b"busybox"),
               CpioEntry("dev/console", "chardev", 0o600, rdev=(5, 1))]
    path.write_bytes(compress(write_newc(entries, mtime), method))
    return path


@pytest.mark.parametrize("method", ["gzip", "xz", "zstd"])
def test_compressed_cpio_names_the_file_and_the_mtime(tmp_path: Path, method: Compression) -> None:
    one = initramfs(tmp_path / "one", init=b"#!/bin/sh\necho one\n", mtime=EPOCH, method=method)
    two = initramfs(tmp_path / "two", init=b"#!/bin/sh\necho two\n", mtime=EPOCH + 1, method=method)
    found = compare_artifacts("initrd.img", one, two)
    init = find(found, "initrd.img: init")
    assert f"mtime {EPOCH} vs {EPOCH + 1}" in init
    assert any(what.startswith("content differs") for what in init)
    assert "-echo one" in init and "+echo two" in init
    assert f"mtime {EPOCH} vs {EPOCH + 1}" in find(found, "initrd.img: dev/console")
    assert not any("only in" in item.what for item in found)


def test_cpio_field_differences_other_than_content(tmp_path: Path) -> None:
    one = tmp_path / "one.cpio"
    two = tmp_path / "two.cpio"
    one.write_bytes(write_newc([CpioEntry("dev/console", "chardev", 0o600, rdev=(5, 1))], EPOCH))
    two.write_bytes(write_newc([CpioEntry("dev/console", "chardev", 0o620, rdev=(5, 2))], EPOCH))
    found = compare_artifacts("initrd.img", one, two)
    assert find(found, "initrd.img: dev/console") == ["mode 0600 vs 0620", "rdev 5:1 vs 5:2"]


def test_identical_cpio_in_different_gzip_streams(tmp_path: Path) -> None:
    archive = write_newc([CpioEntry("init", "file", 0o755, b"#!/bin/sh\n")], EPOCH)
    one, two = tmp_path / "one.gz", tmp_path / "two.gz"
    one.write_bytes(gzip.compress(archive, mtime=1))
    two.write_bytes(gzip.compress(archive, mtime=EPOCH))
    found = compare_artifacts("initrd.img", one, two)
    assert found == [
        Difference("initrd.img", "compressed streams differ, contents identical: the compressor is not deterministic"),
        Difference("initrd.img: gzip header", f"mtime 1 vs {EPOCH}"),
    ]


# ------------------------------------------------------------------------------------- ISO 9660


def write_iso(path: Path, *, epoch: int, files: dict[str, bytes]) -> Path:
    """A Rock Ridge + Joliet ISO with El Torito, written as bootkiln writes its own: pinned pycdlib."""
    boot = bytes(2048)
    with pinned_pycdlib(epoch, b"test"):
        iso = pycdlib.PyCdlib()
        iso.new(interchange_level=3, vol_ident="BOOTKILN", rock_ridge="1.09", joliet=3)
        iso.add_directory("/BOOT", rr_name="boot", joliet_path="/boot")
        iso.add_fp(io.BytesIO(boot), len(boot), "/BOOT/LOADER.BIN;1", rr_name="loader.bin",
                   joliet_path="/boot/loader.bin")
        for name, data in files.items():
            iso.add_fp(io.BytesIO(data), len(data), f"/BOOT/{name.upper()};1", rr_name=name,
                       joliet_path=f"/boot/{name}")
        iso.add_eltorito("/BOOT/LOADER.BIN;1", bootcatfile="/BOOT/BOOT.CAT;1", rr_bootcatname="boot.cat",
                         joliet_bootcatfile="/boot/boot.cat", boot_load_size=4)
        iso.write(str(path))
        iso.close()
    return path


def test_iso_file_content_and_volume_dates(tmp_path: Path) -> None:
    one = write_iso(tmp_path / "one.iso", epoch=EPOCH, files={"vmlinuz": b"\0kernel one" * 300})
    two = write_iso(tmp_path / "two.iso", epoch=EPOCH + 3600, files={"vmlinuz": b"\0kernel two" * 300})
    found = compare_artifacts("boot.iso", one, two, limit=200)
    pvd = find(found, "boot.iso: primary volume descriptor")
    assert any(what.startswith("volume creation date") and "2023-11-14 22:13:20.00 +00:00 vs 2023-11-14 23:13:20.00"
               in what for what in pvd)
    kernel = find(found, "boot.iso: /boot/vmlinuz")
    assert any(what.startswith("content differs (sha256") for what in kernel)
    assert any(what.startswith("date") and "22:13:20 +00:00 vs 2023-11-14 23:13:20 +00:00" in what for what in kernel)
    # The kernel image itself is compared in turn, down to its differing bytes.
    assert kernel[-2:] == ["900 of 3300 bytes differ, in 1 range", "bytes 0x8-0xce3 differ"]  # 8-byte gaps merge
    assert "boot.iso: /boot/loader.bin" in wheres(found)  # its record's date moved too


def test_iso_member_that_is_an_initramfs_is_opened(tmp_path: Path) -> None:
    one_initrd = initramfs(tmp_path / "one.img", init=b"echo one\n", mtime=EPOCH, method="gzip").read_bytes()
    two_initrd = initramfs(tmp_path / "two.img", init=b"echo two\n", mtime=EPOCH, method="gzip").read_bytes()
    one = write_iso(tmp_path / "one.iso", epoch=EPOCH, files={"initrd.img": one_initrd})
    two = write_iso(tmp_path / "two.iso", epoch=EPOCH, files={"initrd.img": two_initrd})
    found = compare_artifacts("boot.iso", one, two)
    assert "+echo two" in find(found, "boot.iso: /boot/initrd.img: init")
    assert not any(item.where.endswith("volume descriptor") for item in found)


def test_identical_isos_give_nothing(tmp_path: Path) -> None:
    one = write_iso(tmp_path / "one.iso", epoch=EPOCH, files={"vmlinuz": b"kernel"})
    two = write_iso(tmp_path / "two.iso", epoch=EPOCH, files={"vmlinuz": b"kernel"})
    assert compare_artifacts("boot.iso", one, two) == []


def test_hybrid_iso_system_area_and_gpt(tmp_path: Path) -> None:
    loader = bytearray(2048)
    loader[0x40:0x44] = b"\xfb\xc0\x78\x70"  # the isolinux signature pycdlib's isohybrid wants

    def write(path: Path, seed: bytes, mbr_id: int) -> Path:
        with pinned_pycdlib(EPOCH, seed):
            iso = pycdlib.PyCdlib()
            iso.new(interchange_level=3, vol_ident="BOOTKILN", rock_ridge="1.09")
            iso.add_fp(io.BytesIO(bytes(loader)), len(loader), "/LOADER.BIN;1", rr_name="loader.bin")
            iso.add_fp(io.BytesIO(bytes(4096)), 4096, "/EFI.IMG;1", rr_name="efi.img")
            iso.add_eltorito("/LOADER.BIN;1", bootcatfile="/BOOT.CAT;1", rr_bootcatname="boot.cat", boot_load_size=4)
            iso.add_eltorito("/EFI.IMG;1", efi=True, platform_id=0xEF, bootable=True)
            iso.add_isohybrid(mbr_id=mbr_id, efi=True)
            iso.write(str(path))
            iso.close()
        return path

    found = compare_artifacts("boot.iso", write(tmp_path / "one.iso", b"one", 0x11223344),
                              write(tmp_path / "two.iso", b"two", 0x11223355))
    assert find(found, "boot.iso: system area") == ["MBR byte differs at 0x1b8 (disk signature)"]
    assert any(what.startswith("disk GUID ") for what in find(found, "boot.iso: GPT header"))
    assert any(what.startswith("unique GUID ") for what in find(found, "boot.iso: GPT partition 1"))
    assert any(what.startswith("disk GUID ") for what in find(found, "boot.iso: backup GPT header"))
    assert not any(item.where.startswith("boot.iso: /") for item in found)


def test_el_torito_entries_and_moved_extents(tmp_path: Path) -> None:
    def write(path: Path, *, load_size: int, efi: bool) -> Path:
        with pinned_pycdlib(EPOCH, b"test"):
            iso = pycdlib.PyCdlib()
            iso.new(interchange_level=3, vol_ident="BOOTKILN", rock_ridge="1.09")
            iso.add_fp(io.BytesIO(bytes(2048)), 2048, "/LOADER.BIN;1", rr_name="loader.bin")
            iso.add_fp(io.BytesIO(bytes(4096)), 4096, "/EFI.IMG;1", rr_name="efi.img")
            if efi:  # a file sorted before the loader pushes it two sectors on
                iso.add_fp(io.BytesIO(bytes(4096)), 4096, "/AAA.BIN;1", rr_name="aaa.bin")
            iso.add_eltorito("/LOADER.BIN;1", bootcatfile="/BOOT.CAT;1", rr_bootcatname="boot.cat",
                             boot_load_size=load_size)
            if efi:
                iso.add_eltorito("/EFI.IMG;1", efi=True, platform_id=0xEF, bootable=True)
            iso.write(str(path))
            iso.close()
        return path

    found = compare_artifacts("boot.iso", write(tmp_path / "one.iso", load_size=4, efi=False),
                              write(tmp_path / "two.iso", load_size=8, efi=True))
    initial = find(found, "boot.iso: El Torito initial entry")
    assert initial[0] == "load size (sectors) 4 vs 8"
    assert initial[1].startswith("boot image extent ") and initial[1].count("(/loader.bin)") == 2
    assert find(found, "boot.iso: El Torito section 1") == ["only in second build"]
    assert find(found, "boot.iso: El Torito section 1 entry 1") == ["only in second build"]
    assert find(found, "boot.iso: /aaa.bin") == ["only in second build"]
    assert find(found, "boot.iso: directory records")[0].startswith("2 extents moved (first: /loader.bin at sector ")


def test_a_truncated_iso_falls_back_to_bytes(tmp_path: Path) -> None:
    whole_one = write_iso(tmp_path / "a.iso", epoch=EPOCH, files={}).read_bytes()
    whole_two = write_iso(tmp_path / "b.iso", epoch=EPOCH + 1, files={}).read_bytes()
    one, two = tmp_path / "one.iso", tmp_path / "two.iso"
    one.write_bytes(whole_one[:40000])
    two.write_bytes(whole_two[:40000])
    found = compare_artifacts("boot.iso", one, two)
    assert found[0].what.startswith("structural iso9660 comparison failed (PyCdlibInvalidISO: ")
    assert found[1].what.endswith("of 40000 bytes differ, in 6 ranges")


# ------------------------------------------------------------------------------------- FAT


def fat_time(stamp: int) -> tuple[int, int]:
    moment = time.gmtime(stamp)
    date = ((moment.tm_year - 1980) << 9) | (moment.tm_mon << 5) | moment.tm_mday
    return date, (moment.tm_hour << 11) | (moment.tm_min << 5) | (moment.tm_sec // 2)


def short_entry(name: bytes, attributes: int, cluster: int, size: int, stamp: int) -> bytes:
    date, clock = fat_time(stamp)
    return struct.pack("<11sBBBHHHHHHHI", name, attributes, 0, 0, clock, date, date, 0, clock, date, cluster, size)


def long_entries(name: str, short: bytes) -> list[bytes]:
    checksum = 0
    for byte in short:
        checksum = (((checksum & 1) << 7) + (checksum >> 1) + byte) & 0xFF
    units = name.encode("utf-16-le") + b"\0\0"
    units += b"\xff" * (-len(units) % 26)
    pieces = [units[offset:offset + 26] for offset in range(0, len(units), 26)]
    entries = []
    for number, piece in enumerate(pieces, start=1):
        sequence = number | (0x40 if number == len(pieces) else 0)
        entries.append(bytes([sequence]) + piece[:10] + bytes([0x0F, 0, checksum]) + piece[10:22] + b"\0\0"
                       + piece[22:26])
    return entries[::-1]


def fat12_image(*, serial: int, boot_efi: bytes, notes: bytes, stamp: int) -> bytes:
    """A 64 KiB FAT12 volume: EFI/BOOT/BOOTX64.EFI (several clusters) and a long-named Notes.txt."""
    sector, total, fat_sectors, root_sectors = 512, 128, 1, 1
    image = bytearray(sector * total)
    image[0:3] = b"\xeb\x3c\x90"
    image[3:11] = b"BOOTKILN"
    struct.pack_into("<HBHBHHBHHHII", image, 11, sector, 1, 1, 2, root_sectors * 16, total, 0xF8, fat_sectors,
                     32, 2, 0, 0)
    struct.pack_into("<BBBI11s8s", image, 36, 0x80, 0, 0x29, serial, b"BOOTKILNEFI", b"FAT12   ")
    image[510:512] = b"\x55\xaa"
    fat = bytearray(sector * fat_sectors)
    data_offset = (1 + 2 * fat_sectors + root_sectors) * sector
    next_cluster = 2

    def set_fat(cluster: int, value: int) -> None:
        at = cluster + cluster // 2
        pair = int.from_bytes(fat[at:at + 2], "little")
        pair = (pair & 0x000F) | (value << 4) if cluster & 1 else (pair & 0xF000) | value
        fat[at:at + 2] = pair.to_bytes(2, "little")

    def store(data: bytes) -> int:
        nonlocal next_cluster
        count = max(1, -(-len(data) // sector))
        first = next_cluster
        for index in range(count):
            cluster = first + index
            set_fat(cluster, cluster + 1 if index < count - 1 else 0xFFF)
            start = data_offset + (cluster - 2) * sector
            image[start:start + sector] = data[index * sector:(index + 1) * sector].ljust(sector, b"\0")
        next_cluster += count
        return first

    set_fat(0, 0xFF8)
    set_fat(1, 0xFFF)
    efi_cluster, boot_cluster = next_cluster, next_cluster + 1
    next_cluster += 2
    boot_file = store(boot_efi)
    notes_file = store(notes)
    dot = short_entry(b".          ", 0x10, efi_cluster, 0, stamp)
    for cluster, entries in (
        (efi_cluster, [dot, short_entry(b"..         ", 0x10, 0, 0, stamp),
                       short_entry(b"BOOT       ", 0x10, boot_cluster, 0, stamp)]),
        (boot_cluster, [short_entry(b".          ", 0x10, boot_cluster, 0, stamp),
                        short_entry(b"..         ", 0x10, efi_cluster, 0, stamp),
                        short_entry(b"BOOTX64 EFI", 0x20, boot_file, len(boot_efi), stamp)]),
    ):
        set_fat(cluster, 0xFFF)
        start = data_offset + (cluster - 2) * sector
        image[start:start + 96] = b"".join(entries)
    notes_short = b"NOTES~1 TXT"
    root = [short_entry(b"BOOTKILNEFI", 0x08, 0, 0, stamp), short_entry(b"EFI        ", 0x10, efi_cluster, 0, stamp),
            *long_entries("Notes.txt", notes_short), short_entry(notes_short, 0x20, notes_file, len(notes), stamp)]
    root_offset = (1 + 2 * fat_sectors) * sector
    image[root_offset:root_offset + 32 * len(root)] = b"".join(root)
    for copy in range(2):
        image[(1 + copy * fat_sectors) * sector:(2 + copy * fat_sectors) * sector] = fat
    return bytes(image)


def test_fat_entries_serial_times_and_content(tmp_path: Path) -> None:
    boot_efi = bytes(range(256)) * 6  # three clusters: the chain is followed
    one, two = tmp_path / "one.img", tmp_path / "two.img"
    one.write_bytes(fat12_image(serial=0xB00C1A17, boot_efi=boot_efi, notes=b"notes\n", stamp=EPOCH))
    changed = bytearray(boot_efi)
    changed[1100] ^= 0xFF  # in the third cluster
    two.write_bytes(fat12_image(serial=0xB00C1A18, boot_efi=bytes(changed), notes=b"notes\n", stamp=EPOCH + 60))
    found = compare_artifacts("efiboot.img", one, two)
    assert find(found, "efiboot.img: FAT boot sector") == ["volume serial 0xB00C1A17 vs 0xB00C1A18"]
    boot = find(found, "efiboot.img: FAT entry EFI/BOOT/BOOTX64.EFI")
    assert "creation time, write time 2023-11-14T22:13:20 vs 2023-11-14T22:14:20" in boot
    assert any(what.startswith("content differs (sha256 ") for what in boot)
    assert "byte 0x44c differs" in boot
    # The long name is assembled from its LFN entries; the 8.3 alias is not a separate entry.
    assert "efiboot.img: FAT entry Notes.txt" in wheres(found)
    assert not any("NOTES~1" in item.where for item in found)


def test_fat_with_only_a_content_change(tmp_path: Path) -> None:
    one, two = tmp_path / "one.img", tmp_path / "two.img"
    one.write_bytes(fat12_image(serial=1, boot_efi=b"MZ", notes=b"one\n", stamp=EPOCH))
    two.write_bytes(fat12_image(serial=1, boot_efi=b"MZ", notes=b"two\n", stamp=EPOCH))
    found = compare_artifacts("efiboot.img", one, two)
    assert wheres(found) == ["efiboot.img: FAT entry Notes.txt"] * 4
    assert found[-2:] == [Difference("efiboot.img: FAT entry Notes.txt", "-one"),
                          Difference("efiboot.img: FAT entry Notes.txt", "+two")]


# ------------------------------------------------------------------------------------- ELF


def elf_section(path: Path, wanted: str) -> tuple[int, int]:
    """(offset, size) of a section of an ELF64 little-endian file, read independently of the module."""
    data = path.read_bytes()
    section_offset, = struct.unpack_from("<Q", data, 0x28)
    entry_size, count, names_index = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, section_offset + index * entry_size) for index in range(count)]
    names_at = headers[names_index][4]
    for header in headers:
        name = data[names_at + header[0]:].split(b"\0", 1)[0].decode()
        if name == wanted:
            return header[4], header[5]
    raise AssertionError(f"{path} has no {wanted}")


def test_elf_names_the_section_and_the_strings(tmp_path: Path) -> None:
    # The project runs on 64-bit Debian hosts, where /bin/true is a 64-bit ELF.
    source = Path("/bin/true")
    assert source.read_bytes()[:5] == b"\x7fELF\x02", "/bin/true is not a 64-bit ELF here"
    one, two = tmp_path / "one", tmp_path / "two"
    shutil.copyfile(source, one)
    offset, size = elf_section(one, ".rodata")
    data = bytearray(one.read_bytes())
    rodata = bytes(data[offset:offset + size])
    match = re.search(rb"[A-Za-z]{10,}", rodata)
    assert match is not None
    position = offset + match.start()
    data[position] = ord("Q") if data[position] != ord("Q") else ord("R")
    two.write_bytes(bytes(data))
    found = compare_artifacts("busybox", one, two)
    rodata_what = find(found, "busybox: section .rodata")
    assert len(rodata_what) == 1 and rodata_what[0].startswith("content differs (sha256 ")
    assert "embedded dates" in rodata_what[0]
    strings = find(found, "busybox: strings")
    assert any(what.startswith("only in first build: ") for what in strings)
    assert any(what.startswith("only in second build: ") for what in strings)
    assert not any("section .text" in where for where in wheres(found))


# ------------------------------------------------------------------------------------- text and bytes


def test_text_files_give_a_unified_diff(tmp_path: Path) -> None:
    one, two = tmp_path / "one.cfg", tmp_path / "two.cfg"
    one.write_text("set timeout=0\nset default=0\nmenuentry rescue\n")
    two.write_text("set timeout=5\nset default=0\nmenuentry rescue")
    found = compare_artifacts("grub.cfg", one, two)
    assert [item.what for item in found] == [
        "@@ -1,3 +1,3 @@", "-set timeout=0", "+set timeout=5", " set default=0", "-menuentry rescue",
        "+menuentry rescue (no newline at end)"]
    assert set(wheres(found)) == {"grub.cfg"}


def test_binary_ranges_are_merged_and_capped(tmp_path: Path) -> None:
    one, two = tmp_path / "one.bin", tmp_path / "two.bin"
    base = bytes(range(256)) * 64  # 16 KiB with NUL bytes in it: not text
    changed = bytearray(base)
    for at in range(100, 100 * 101, 100):  # 100 single-byte changes, 100 bytes apart
        changed[at] ^= 0xFF
    changed[5] ^= 0xFF
    changed[20] ^= 0xFF  # 15 equal bytes from 5: merged with it into one range
    one.write_bytes(base)
    two.write_bytes(bytes(changed) + b"tail")
    found = compare_artifacts("isolinux.bin", one, two, limit=10)
    assert len(found) == 11
    assert found[0] == Difference("isolinux.bin", "size 16384 vs 16388 bytes (+4)")
    assert found[1] == Difference("isolinux.bin", "bytes 0x4000-0x4003 only in the second build")
    assert found[2] == Difference("isolinux.bin", "102 of 16384 bytes differ, in 101 ranges")
    assert found[3] == Difference("isolinux.bin", "bytes 0x5-0x14 differ")
    assert found[4] == Difference("isolinux.bin", "byte 0x64 differs")
    assert found[-1] == Difference("…", "94 more differences not shown")


def test_large_files_are_compared_in_chunks(tmp_path: Path) -> None:
    size = 64 << 20
    one, two = tmp_path / "one.bin", tmp_path / "two.bin"
    for path in (one, two):
        with path.open("wb") as handle:
            handle.truncate(size)
            handle.seek(0)
            handle.write(b"\x01binary")
    with two.open("r+b") as handle:
        for at in (0x1000, 0x2000000, size - 2):
            handle.seek(at)
            handle.write(b"\xff\xff")
    started = time.monotonic()
    found = compare_artifacts("vmlinuz", one, two)
    assert time.monotonic() - started < 5
    assert [item.what for item in found] == [f"6 of {size} bytes differ, in 3 ranges", "bytes 0x1000-0x1001 differ",
                                             "bytes 0x2000000-0x2000001 differ",
                                             f"bytes 0x{size - 2:x}-0x{size - 1:x} differ"]


# ------------------------------------------------------------------------------------- damaged input


def test_a_truncated_tar_falls_back_to_bytes(tmp_path: Path) -> None:
    write_tar(tmp_path / "whole.tar", [("./big", bytes(range(256)) * 40, 0o644, EPOCH, {})])
    whole = (tmp_path / "whole.tar").read_bytes()
    one, two = tmp_path / "one.tar", tmp_path / "two.tar"
    one.write_bytes(whole[:4096])
    two.write_bytes(whole[:4096].replace(b"\x10\x11\x12", b"\x00\x00\x00", 1))
    found = compare_artifacts("rootfs.tar", one, two)
    assert found[0].where == "rootfs.tar"
    assert found[0].what.startswith("structural tar comparison failed (")
    assert found[0].what.endswith("; comparing raw bytes")
    assert found[-1].what.startswith("bytes 0x")


def test_a_damaged_gzip_stream_falls_back_to_bytes(tmp_path: Path) -> None:
    # A valid gzip header, then a deflate block of the reserved type 3: zlib raises its own error.
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
    one, two = tmp_path / "one.gz", tmp_path / "two.gz"
    one.write_bytes(header + b"\x07" + bytes(16))
    two.write_bytes(header + b"\x07" + bytes(15) + b"\x01")
    found = compare_artifacts("initrd.img", one, two)
    assert found[0].where == "initrd.img"
    assert found[0].what.startswith("structural gzip comparison failed (error: Error -3 while decompressing")
    assert found[-1] == Difference("initrd.img", "byte 0x1a differs")


def test_bytes_no_parser_reads_are_still_located(tmp_path: Path) -> None:
    image = bytearray(fat12_image(serial=1, boot_efi=b"MZ", notes=b"x", stamp=EPOCH))
    one, two = tmp_path / "one.img", tmp_path / "two.img"
    one.write_bytes(bytes(image))
    image[0x100] = 0xCC  # boot code: no field of the FAT reader covers it
    two.write_bytes(bytes(image))
    found = compare_artifacts("efiboot.img", one, two)
    assert found == [Difference("efiboot.img", "no fat structure differs, but the bytes do"),
                     Difference("efiboot.img", "1 of 65536 bytes differ, in 1 range"),
                     Difference("efiboot.img", "byte 0x100 differs")]


def test_a_damaged_fat_and_a_changed_kind(tmp_path: Path) -> None:
    image = bytearray(fat12_image(serial=1, boot_efi=b"MZ", notes=b"x", stamp=EPOCH))
    one, two = tmp_path / "one.img", tmp_path / "two.img"
    one.write_bytes(bytes(image))
    image[11:13] = (3).to_bytes(2, "little")  # 3 bytes per sector
    two.write_bytes(bytes(image))
    found = compare_artifacts("efiboot.img", one, two)
    assert "implausible FAT geometry" in found[0].what
    assert found[-1] == Difference("efiboot.img", "bytes 0xb-0xc differ")
    (tmp_path / "text").write_text("hello\n")
    found = compare_artifacts("efiboot.img", one, tmp_path / "text")
    assert found[0] == Difference("efiboot.img", "kind fat vs text")


def test_describe_is_one_escaped_line_each() -> None:
    text = describe([Difference("rootfs.tar: ./etc/\x1b[2Jevil", "mtime 1 vs 2"), Difference("…", "3 more")])
    assert text == "  rootfs.tar: ./etc/\\x1b[2Jevil: mtime 1 vs 2\n  …: 3 more"
