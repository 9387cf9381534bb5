"""Hybrid BIOS/UEFI ISO images written natively with pycdlib, byte for byte reproducibly.

Boot paths in one file:
  BIOS CD   El Torito entry (platform 0) -> isolinux.bin -> ldlinux.c32 -> isolinux.cfg
  BIOS USB  isohybrid MBR (Debian's isohdpfx.bin) -> isolinux.bin
  UEFI CD   El Torito entry (platform 0xEF) -> FAT image -> EFI/BOOT/BOOTX64.EFI (Debian's signed
            shim) -> EFI/BOOT/grubx64.efi (Debian's signed CD GRUB) -> the signed kernel
  UEFI USB  the same FAT image, found through the El Torito record or MBR/GPT partition 2
The signed GRUB's embedded config finds the ISO9660 filesystem by /.disk/info and reads
/boot/grub/grub.cfg, so the kernel and initramfs are stored once.

pycdlib reads the clock at add time and at write(), formats dates in local time, and draws GPT
GUIDs and the MBR id at random. `pinned_pycdlib` replaces those inside pycdlib's own modules for
the duration of a build, so the bytes depend only on the inputs and SOURCE_DATE_EPOCH.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import random
import re
import sys
import time
import types
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import struct_time
from typing import Any, BinaryIO

import pycdlib

# Where pycdlib 1.22 reads the clock, the time zone or randomness. Checked on every build, so
# a pycdlib release that moves them fails loudly instead of writing a different image.
PINNED_MODULES: dict[str, tuple[str, ...]] = {
    "pycdlib.dates": ("time",),
    "pycdlib.utils": ("time",),
    "pycdlib.headervd": ("time",),
    "pycdlib.pycdlib": ("time",),
    "pycdlib.udf": ("time", "random"),
    "pycdlib.inplaceeditor": ("time",),
    "pycdlib.isohybrid": ("uuid", "random"),
}
ISOHDPFX_SIZE = 432
# What the config built into Debian's signed GRUB searches for (debian/build-efi-images in grub2).
DISK_INFO = "/.disk/info"


class _FrozenTime(types.ModuleType):
    """`time` with the clock stopped at SOURCE_DATE_EPOCH and the local zone set to UTC."""

    def __init__(self, epoch: int) -> None:
        super().__init__("time")
        self._epoch = epoch

    def time(self) -> float:
        return float(self._epoch)

    def time_ns(self) -> int:
        return self._epoch * 1_000_000_000

    def gmtime(self, secs: float | None = None) -> struct_time:
        return time.gmtime(self._epoch if secs is None else secs)

    localtime = gmtime

    def strftime(self, fmt: str, moment: Any = None) -> str:
        return time.strftime(fmt, self.gmtime() if moment is None else moment)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class _SeededUUID(types.ModuleType):
    """`uuid` whose uuid4() yields a fixed sequence of version-4 UUIDs derived from a seed."""

    def __init__(self, seed: bytes) -> None:
        super().__init__("uuid")
        self._seed = seed
        self._count = 0

    def uuid4(self) -> uuid.UUID:
        self._count += 1
        return uuid.UUID(bytes=hashlib.sha256(self._seed + b"/uuid4/%d" % self._count).digest()[:16], version=4)

    def __getattr__(self, name: str) -> Any:
        return getattr(uuid, name)


class _SeededRandom(types.ModuleType):
    def __init__(self, seed: bytes) -> None:
        super().__init__("random")
        self._rng = random.Random(seed)  # noqa: S311 - reproducible ids, not secrets

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rng, name)


@contextlib.contextmanager
def pinned_pycdlib(source_date_epoch: int, seed: bytes) -> Iterator[None]:
    """Stop pycdlib's clock, zone and randomness for building and writing one image."""
    full_seed = b"bootkiln/%d/" % source_date_epoch + seed
    fakes: dict[int, types.ModuleType] = {id(time): _FrozenTime(source_date_epoch),
                                          id(uuid): _SeededUUID(full_seed), id(random): _SeededRandom(full_seed)}
    for name in PINNED_MODULES:
        importlib.import_module(name)
    saved: list[tuple[types.ModuleType, str, Any]] = []
    found: dict[str, set[str]] = {}
    try:
        for module_name, module in sorted(sys.modules.items()):
            if module is None or not module_name.startswith("pycdlib"):
                continue
            for attribute, value in list(vars(module).items()):
                fake = fakes.get(id(value))
                if fake is not None:
                    saved.append((module, attribute, value))
                    setattr(module, attribute, fake)
                    found.setdefault(module_name, set()).add(attribute)
        for module_name, attributes in PINNED_MODULES.items():
            if missing := set(attributes) - found.get(module_name, set()):
                raise RuntimeError(f"pycdlib changed: {module_name} no longer imports {missing}; "
                                   "re-audit bootkiln.formats.iso.pinned_pycdlib")
        yield
    finally:
        for module, attribute, value in reversed(saved):
            setattr(module, attribute, value)


@dataclass(frozen=True)
class BootFiles:
    kernel: Path
    initrd: Path
    isolinux_bin: Path
    ldlinux_c32: Path
    isohdpfx: Path
    efi_image: Path


@dataclass(frozen=True)
class IsoFile:
    path: str  # Rock Ridge / Joliet path, e.g. /boot/vmlinuz
    data: bytes

    @property
    def iso9660(self) -> str:
        return iso9660_path(self.path)


def iso9660_path(path: str, *, folder: bool = False) -> str:
    """The plain ISO 9660 name for a path: d-characters and at most one dot per file name (Linux reads
    the Rock Ridge name, which keeps the original; this one only has to be valid and unique)."""
    def clean(part: str) -> str:
        return re.sub(r"[^A-Z0-9_]", "_", part.upper())

    *folders, name = path.strip("/").split("/")
    if folder:
        return "/" + "/".join(clean(part)[:31] for part in [*folders, name])
    stem, dot, extension = name.rpartition(".")
    leaf = f"{clean(stem)[:30 - len(extension)]}.{clean(extension)}" if dot else clean(name)[:31]
    return "/" + "/".join([*(clean(part)[:31] for part in folders), f"{leaf};1"])


def isolinux_cfg(cmdline: str) -> str:
    # SERIAL first, so isolinux's own messages reach the serial console too.
    return ("SERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\nDEFAULT bootkiln\nLABEL bootkiln\n"
            f"  KERNEL /boot/vmlinuz\n  INITRD /boot/initrd.img\n  APPEND {cmdline}\n")


def grub_cfg(cmdline: str, label: str, *, pc_serial: bool = True) -> str:
    # $root and $prefix were set by the config embedded in the signed GRUB (search --file /.disk/info).
    # Without a PC serial port (arm64) the firmware's console already is the serial console.
    serial = ("serial --unit=0 --speed=115200\nterminal_input console serial\nterminal_output console serial\n"
              if pc_serial else "")
    return (serial + "set timeout=0\nset default=0\n"
            f'menuentry "{label}" {{\n  linux /boot/vmlinuz {cmdline}\n  initrd /boot/initrd.img\n}}\n')


def fix_gpt_crcs(handle: BinaryIO) -> None:
    """pycdlib 1.22 checksums only the used GPT entries; the UEFI spec (and Linux) want all of them."""

    def fix_header(offset: int) -> int:
        handle.seek(offset)
        header = bytearray(handle.read(512))
        if header[:8] != b"EFI PART":
            raise RuntimeError(f"no GPT header at byte {offset}")
        size = int.from_bytes(header[12:16], "little")
        backup_lba = int.from_bytes(header[32:40], "little")
        entries_lba = int.from_bytes(header[72:80], "little")
        count = int.from_bytes(header[80:84], "little")
        entry_size = int.from_bytes(header[84:88], "little")
        handle.seek(entries_lba * 512)
        header[88:92] = zlib.crc32(handle.read(count * entry_size)).to_bytes(4, "little")
        header[16:20] = b"\0\0\0\0"
        header[16:20] = zlib.crc32(bytes(header[:size])).to_bytes(4, "little")
        handle.seek(offset)
        handle.write(bytes(header))
        return backup_lba

    fix_header(fix_header(512) * 512)


@contextlib.contextmanager
def populated_iso(label: str, content: Sequence[IsoFile], extra: Sequence[tuple[str, Path]],
                  source_date_epoch: int) -> Iterator[pycdlib.PyCdlib]:
    """A new ISO holding `content` and the `extra` files in their folders, with pycdlib's clock, time
    zone and random numbers pinned until the caller has written it; closed afterwards."""
    folders = sorted({str(Path(path).parent) for path in [*(item.path for item in content), *(p for p, _ in extra)]}
                     - {"/"}, key=lambda p: p.count("/"))
    with pinned_pycdlib(source_date_epoch, seed=label.encode()), contextlib.ExitStack() as handles:
        iso = pycdlib.PyCdlib()
        iso.new(interchange_level=3, vol_ident=label, sys_ident="LINUX", app_ident_str="BOOTKILN",
                rock_ridge="1.09", joliet=3)
        for folder in folders:
            iso.add_directory(iso9660_path(folder, folder=True), rr_name=Path(folder).name, joliet_path=folder,
                              file_mode=0o40555)
        for item in content:
            iso.add_fp(io.BytesIO(item.data), len(item.data), item.iso9660, rr_name=Path(item.path).name,
                       joliet_path=item.path, file_mode=0o100444)
        # Large payloads (a live system's squashfs) are streamed from disk while the image is written.
        for path, source in extra:
            handle = handles.enter_context(source.open("rb"))
            iso.add_fp(handle, source.stat().st_size, iso9660_path(path), rr_name=Path(path).name,
                       joliet_path=path, file_mode=0o100444)
        yield iso
        iso.close()


def write_hybrid_iso(destination: Path, files: BootFiles, *, label: str, cmdline: str, marker: str,
                     source_date_epoch: int, extra: Sequence[tuple[str, Path]] = ()) -> None:
    """Write the ISO to `destination` (a temporary path; the caller renames it into place)."""
    mbr_code = files.isohdpfx.read_bytes()
    if len(mbr_code) != ISOHDPFX_SIZE:
        raise RuntimeError(f"{files.isohdpfx}: expected {ISOHDPFX_SIZE} bytes of isohybrid MBR code")
    efi_image = files.efi_image.read_bytes()
    if len(efi_image) % 512 or len(efi_image) // 512 > 0xFFFF:
        raise RuntimeError("the EFI image must be a whole number of sectors and under 32 MiB")
    content = [
        IsoFile(marker, f"{label}\n".encode()),
        IsoFile(DISK_INFO, f"{label}\n".encode()),
        IsoFile("/isolinux/isolinux.bin", files.isolinux_bin.read_bytes()),
        IsoFile("/isolinux/ldlinux.c32", files.ldlinux_c32.read_bytes()),
        IsoFile("/isolinux/isolinux.cfg", isolinux_cfg(cmdline).encode()),
        IsoFile("/boot/grub/grub.cfg", grub_cfg(cmdline, label).encode()),
        IsoFile("/boot/grub/efi.img", efi_image),
        IsoFile("/boot/vmlinuz", files.kernel.read_bytes()),
        IsoFile("/boot/initrd.img", files.initrd.read_bytes()),
    ]
    mbr_id = zlib.crc32(b"bootkiln-mbr/%d/%s" % (source_date_epoch, label.encode())) or 1
    with populated_iso(label, content, extra, source_date_epoch) as iso:
        # BIOS first (the initial entry), then UEFI: pycdlib sizes the EFI partition from the last entry.
        iso.add_eltorito("/ISOLINUX/ISOLINUX.BIN;1", bootcatfile="/ISOLINUX/BOOT.CAT;1", rr_bootcatname="boot.cat",
                         joliet_bootcatfile="/isolinux/boot.cat", boot_load_size=4, boot_info_table=True,
                         platform_id=0)
        iso.add_eltorito("/BOOT/GRUB/EFI.IMG;1", efi=True, platform_id=0xEF, bootable=True)
        iso.add_isohybrid(mbr_id=mbr_id, efi=True)
        hybrid = iso.isohybrid_mbr
        assert hybrid is not None and hybrid.primary_gpt is not None and hybrid.secondary_gpt is not None
        # pycdlib carries an older syslinux's MBR code; use the one matching our isolinux.bin.
        if mbr_code[:32] != hybrid.header:
            raise RuntimeError(f"{files.isohdpfx}: not an isohybrid MBR of the expected kind")
        hybrid.mbr = mbr_code[32:ISOHDPFX_SIZE]
        # The backup GPT must mirror the primary one; pycdlib draws their GUIDs separately.
        hybrid.secondary_gpt.header.disk_guid = hybrid.primary_gpt.header.disk_guid
        for backup, primary in zip(hybrid.secondary_gpt.parts, hybrid.primary_gpt.parts, strict=True):
            backup.part_guid = primary.part_guid
        with destination.open("w+b") as output:
            iso.write_fp(output)
            fix_gpt_crcs(output)


def list_iso(path: Path) -> list[str]:
    """Rock Ridge paths of the files in an ISO, for checks and diffs."""
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        return sorted(f"{folder.rstrip('/')}/{name}" for folder, _, names in iso.walk(rr_path="/") for name in names)
    finally:
        iso.close()
