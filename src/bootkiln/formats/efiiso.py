"""UEFI-only ISO images (arm64 has no BIOS), written with pycdlib, byte for byte reproducibly.

Boot paths in one file:
  UEFI CD   El Torito entry (platform 0xEF) -> FAT image -> EFI/BOOT/BOOTAA64.EFI (Debian's signed
            shim -> grubaa64.efi, signed GRUB; or, secureboot = false, an unsigned GRUB)
  UEFI USB  the same FAT image as the EFI system partition of a GPT (protective MBR), whose
            table lives in the ISO's unused system area and, as backup, past its end.
GRUB finds the ISO9660 filesystem by its marker file and reads /boot/grub/grub.cfg, as on amd64.
pycdlib's isohybrid support needs isolinux, so the GPT is written here.
"""

from __future__ import annotations

import hashlib
import io
import struct
import uuid
import zlib
from collections.abc import Sequence
from pathlib import Path

from bootkiln.formats.iso import DISK_INFO, IsoFile, grub_cfg, iso9660_path, populated_iso

SECTOR = 512
ISO_BLOCK = 2048
ENTRIES = 128
ENTRY_SIZE = 128
ENTRY_SECTORS = ENTRIES * ENTRY_SIZE // SECTOR
ESP_TYPE = uuid.UUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
EFI_IMAGE = "/boot/grub/efi.img"


def _guid(seed: bytes, what: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=hashlib.sha256(seed + b"/" + what).digest()[:16], version=4)


def _gpt_header(*, mine: int, alternate: int, first_usable: int, last_usable: int, disk: uuid.UUID,
                entries_lba: int, entries_crc: int) -> bytes:
    fields = [b"EFI PART", 0x00010000, 92, 0, 0, mine, alternate, first_usable, last_usable, disk.bytes_le,
              entries_lba, ENTRIES, ENTRY_SIZE, entries_crc]
    header = bytearray(struct.pack("<8sIIIIQQQQ16sQIII", *fields))
    header[16:20] = zlib.crc32(header).to_bytes(4, "little")
    return bytes(header).ljust(SECTOR, b"\0")


def gpt_for_esp(total_sectors: int, esp_first: int, esp_sectors: int, seed: bytes) -> tuple[bytes, bytes]:
    """The protective MBR + primary GPT (LBA 0-33) and the backup GPT (the last 33 sectors)."""
    last = total_sectors - 1
    backup_entries = last - ENTRY_SECTORS
    entry = struct.pack("<16s16sQQQ72s", ESP_TYPE.bytes_le, _guid(seed, b"esp").bytes_le, esp_first,
                        esp_first + esp_sectors - 1, 0, "EFI system partition".encode("utf-16-le"))
    entries = entry.ljust(ENTRIES * ENTRY_SIZE, b"\0")
    crc = zlib.crc32(entries)
    disk = _guid(seed, b"disk")
    primary = _gpt_header(mine=1, alternate=last, entries_lba=2, first_usable=2 + ENTRY_SECTORS,
                          last_usable=backup_entries - 1, disk=disk, entries_crc=crc)
    backup = _gpt_header(mine=last, alternate=1, entries_lba=backup_entries, first_usable=2 + ENTRY_SECTORS,
                         last_usable=backup_entries - 1, disk=disk, entries_crc=crc)
    mbr = bytearray(SECTOR)
    mbr[440:444] = (zlib.crc32(seed) or 1).to_bytes(4, "little")
    # One protective partition of type 0xEE over the whole disk (or as much as 32 bits can say).
    mbr[446:462] = struct.pack("<B3sB3sII", 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1,
                               min(total_sectors - 1, 0xFFFFFFFF))
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr) + primary + entries, entries + backup


def write_efi_iso(destination: Path, *, kernel: Path, initrd: Path, efi_image: Path, label: str, cmdline: str,
                  marker: str, source_date_epoch: int, extra: Sequence[tuple[str, Path]] = ()) -> None:
    """Write the ISO to `destination` (a temporary path; the caller renames it into place)."""
    efi = efi_image.read_bytes()
    if len(efi) % SECTOR or len(efi) // SECTOR > 0xFFFF:
        raise RuntimeError("the EFI image must be a whole number of sectors and under 32 MiB")
    content = [
        IsoFile(marker, f"{label}\n".encode()),
        # Debian's signed GRUB (Secure Boot) finds the medium by /.disk/info, the unsigned one by the marker.
        IsoFile(DISK_INFO, f"{label}\n".encode()),
        IsoFile("/boot/grub/grub.cfg", grub_cfg(cmdline, label, pc_serial=False).encode()),
        IsoFile(EFI_IMAGE, efi),
        IsoFile("/boot/vmlinuz", kernel.read_bytes()),
        IsoFile("/boot/initrd.img", initrd.read_bytes()),
    ]
    seed = b"bootkiln-efi-iso/%d/%s" % (source_date_epoch, label.encode())
    with populated_iso(label, content, extra, source_date_epoch) as iso:
        iso.add_eltorito(iso9660_path(EFI_IMAGE), bootcatfile="/BOOT/GRUB/BOOT.CAT;1", rr_bootcatname="boot.cat",
                         joliet_bootcatfile="/boot/grub/boot.cat", efi=True, platform_id=0xEF, bootable=True)
        with destination.open("w+b") as output:
            iso.write_fp(output)
            esp_first = iso.get_record(iso_path=iso9660_path(EFI_IMAGE)).extent_location() * (ISO_BLOCK // SECTOR)
            size = output.seek(0, io.SEEK_END)
            # Room for the backup GPT after the ISO, in whole ISO blocks.
            backup_room = -(-(ENTRY_SECTORS + 1) * SECTOR // ISO_BLOCK) * ISO_BLOCK
            total = (size + backup_room) // SECTOR
            head, tail = gpt_for_esp(total, esp_first, len(efi) // SECTOR, seed)
            output.seek(0)
            if output.read(len(head)).strip(b"\0"):
                raise RuntimeError("pycdlib wrote into the system area the GPT needs")
            output.seek(0)
            output.write(head)
            output.truncate(total * SECTOR)
            output.seek(total * SECTOR - len(tail))
            output.write(tail)
