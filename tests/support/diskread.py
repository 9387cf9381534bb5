"""Read an installed disk image from Python: GPT, LVM2 and, through debugfs, ext4 trees.

Tests of an installer need to look inside the raw disk it wrote. Loop devices, mounts and
device-mapper need root and a cooperative kernel (CI containers often have neither), so this
reads the on-disk formats directly and only shells out to `debugfs`, which opens a filesystem
image as a plain file.

The GPT itself is read by bootkiln.formats.gpt, which the artifact diff shares.

Supported: GPT with 512-byte sectors; an LVM2 PV inside one partition whose LVs are linear
(`striped` with one stripe, any number of segments) on that same PV. Anything else is refused
with an error that names the image and the layout, never guessed at.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bootkiln.errors import EnvironmentProblem, InputError
from bootkiln.formats import gpt
from bootkiln.formats.corrupt import CorruptArtifact
from bootkiln.formats.fat import FatVolume

SECTOR = gpt.SECTOR  # LVM counts in 512-byte sectors too
CHUNK = 1 << 20  # extract() copies, and leaves holes for zeros, in units of this many bytes


class DiskReadError(InputError):
    """The image is damaged, or laid out in a way this reader does not handle."""


class UnsupportedLayout(DiskReadError):
    """The image is valid, but uses a layout (RAID, thin, multi-PV...) this reader refuses."""


def _read_at(image: Path, offset: int, length: int) -> bytes:
    with image.open("rb") as stream:
        stream.seek(offset)
        return stream.read(length)


# --- partition tables --------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskLabel:
    """What the first sectors say about how the disk is partitioned."""

    mbr_signature: bool  # 0x55AA at byte 510: an MBR (real or GPT's protective one) is present
    mbr_types: tuple[int, ...]  # the non-empty MBR partition types (0xEE = GPT protective)
    gpt: bool  # "EFI PART" at LBA 1 (not checksummed here: read_gpt does that)

    @property
    def has_partition_table(self) -> bool:
        return self.gpt or (self.mbr_signature and bool(self.mbr_types))


def probe_disk(image: Path) -> DiskLabel:
    head = _read_at(image, 0, 2 * SECTOR)
    signature = len(head) >= SECTOR and head[510:512] == b"\x55\xaa"
    types: tuple[int, ...] = ()
    if signature:
        types = tuple(head[446 + 16 * index + 4] for index in range(4) if head[446 + 16 * index + 4])
    return DiskLabel(signature, types, head[SECTOR:SECTOR + 8] == gpt.SIGNATURE)


@dataclass(frozen=True)
class Partition:
    number: int  # 1-based index in the GPT entry array, as Linux names it (sda3 is number 3)
    name: str
    type_guid: str  # lowercase canonical, e.g. "0fc63daf-8483-4772-8e79-3d69d8477de4"
    unique_guid: str
    first_lba: int
    last_lba: int  # inclusive, as GPT stores it
    attributes: int  # bit 2 is "legacy BIOS bootable"

    @property
    def start(self) -> int:
        return self.first_lba * SECTOR

    @property
    def size(self) -> int:
        return (self.last_lba - self.first_lba + 1) * SECTOR


def read_gpt(image: Path) -> list[Partition]:
    """The used entries of the primary GPT, checksums verified, in entry-array order."""
    header = _read_at(image, SECTOR, SECTOR)
    if header[:8] != gpt.SIGNATURE:
        if _read_at(image, 4096, 8) == gpt.SIGNATURE:
            raise UnsupportedLayout(f"{image}: GPT with 4096-byte sectors is not supported")
        label = probe_disk(image)
        what = "no partition table"
        if label.has_partition_table:
            what = "an MBR with partition types " + ", ".join(f"{kind:#04x}" for kind in label.mbr_types)
        raise DiskReadError(f"{image}: no GPT header at LBA 1 (found {what})")
    try:
        with image.open("rb") as handle:
            entries = gpt.read_primary(handle)
    except CorruptArtifact as error:
        raise DiskReadError(f"{image}: {error}") from None
    return [Partition(entry.number, entry.name, entry.type_guid, entry.unique_guid, entry.first_lba, entry.last_lba,
                      entry.attributes) for entry in entries]


# --- LVM2: on-disk label and metadata area ------------------------------------------------------

def extract(image: Path, ranges: Sequence[tuple[int, int]], dest: Path) -> None:
    """Write the (offset, length) ranges of image, concatenated, to dest as a sparse file."""
    image_size = image.stat().st_size
    for offset, length in ranges:
        if offset < 0 or length < 0 or offset + length > image_size:
            raise DiskReadError(f"{image}: range {offset}+{length} is outside the image ({image_size} bytes)")
    total = 0
    try:
        with image.open("rb") as source, dest.open("wb") as out:
            for offset, length in ranges:
                source.seek(offset)
                remaining = length
                while remaining:
                    chunk = source.read(min(CHUNK, remaining))
                    if not chunk:
                        raise DiskReadError(f"{image}: short read at byte {offset + length - remaining}")
                    # An all-zero chunk becomes a hole: installed disks are mostly empty space.
                    if chunk.count(0) == len(chunk):
                        out.seek(len(chunk), os.SEEK_CUR)
                    else:
                        out.write(chunk)
                    remaining -= len(chunk)
                total += length
            out.truncate(total)  # a hole at the end still counts toward the size
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


_DEBUGFS_BANNER = re.compile(r"debugfs \d[\w.-]* \(.*\)")
_SBIN = "/usr/sbin:/sbin"


def _debugfs_quote(path: Path) -> str:
    # debugfs splits its request with libss, which honours "..." and reads "" inside as one ".
    text = str(path)
    if "\n" in text or "\0" in text:
        raise InputError(f"debugfs cannot take a path with a newline: {text!r}")
    return '"' + text.replace('"', '""') + '"'


def replay_journal(fs_image: Path) -> None:
    """Replay the ext4 journal of a filesystem copied from a disk whose machine was stopped while it
    was mounted. Until then its committed metadata (allocation bitmaps, directories) may live only
    in the journal, and debugfs, which never replays it, reads checksum errors or stale data."""
    process = subprocess.run(["e2fsck", "-E", "journal_only", "-y", str(fs_image)], capture_output=True, text=True,
                             check=False)
    if process.returncode >= 4:  # 1 and 2 mean something was repaired, which is what we asked for
        detail = (process.stderr or process.stdout).strip().splitlines()
        raise DiskReadError(f"{fs_image}: e2fsck could not replay the journal (status {process.returncode}): "
                            f"{detail[-1] if detail else 'no output'}")


def dump_ext4_tree(fs_image: Path, dest: Path, *, owners: bool = True) -> None:
    """Copy an ext2/3/4 image's whole tree into dest (absent or empty) with modes, owners, times.

    debugfs rdump copies directories, regular files and symlinks; it skips device nodes, FIFOs
    and sockets, turns hard links into copies and drops xattrs. Setting owners needs root: pass
    owners=False to accept files owned by whoever runs this instead of failing.
    """
    debugfs = shutil.which("debugfs", path=os.environ.get("PATH", "") + ":" + _SBIN)
    if debugfs is None:
        raise EnvironmentProblem("debugfs is not installed", hint="apt-get install e2fsprogs")
    if not fs_image.is_file():
        raise InputError(f"{fs_image}: no such filesystem image")
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise InputError(f"{dest}: dump_ext4_tree needs an empty destination folder")
    argv = [debugfs, "-R", f"rdump / {_debugfs_quote(dest.resolve())}", str(fs_image.resolve())]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=900, check=False)
    except subprocess.TimeoutExpired:
        raise EnvironmentProblem(f"debugfs took over 15 minutes to dump {fs_image}") from None
    # debugfs exits 0 when it cannot open the image or a file fails to copy: its stderr, past the
    # version banner, is the only reliable sign of trouble.
    problems = [line for line in result.stderr.splitlines()
                if line.strip() and not _DEBUGFS_BANNER.fullmatch(line)
                and (owners or "while changing ownership of" not in line)]
    if result.returncode != 0 or problems:
        detail = "; ".join(problems[-5:]) or f"exit status {result.returncode}"
        hint = "run as root, or pass owners=False" if any("ownership" in line for line in problems) else ""
        raise DiskReadError(f"{fs_image}: debugfs rdump failed: {detail}", hint=hint)
    if not any(dest.iterdir()):
        raise DiskReadError(f"{fs_image}: debugfs rdump copied nothing into {dest}")


def efi_file(efi_image: Path, name: str) -> bytes:
    """One file's bytes from a FAT image (an ISO's EFI image, an ESP), e.g. "EFI/BOOT/BOOTX64.EFI"."""
    with efi_image.open("rb") as handle:
        volume = FatVolume(handle)
        entry = dict(volume.walk())[name]
        return volume.content(volume.first_cluster(entry), int.from_bytes(entry[28:32], "little"))
