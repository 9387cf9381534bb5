"""Guards between stages: a stage refuses an input (or its own output) built for another architecture.

Each guard reads the bytes, so a parameter forgotten anywhere upstream is caught where it matters,
with a message naming the file, what it is built for and what the target is.
"""

from __future__ import annotations

import lzma
import tarfile
from pathlib import Path

from bootkiln.errors import InputError, InternalError
from bootkiln.formats.arch import (
    ARCHES,
    ELF_MACHINES,
    PE_MACHINES,
    deb_field,
    elf_machine,
    kernel_image_arch,
    pe_machine,
)
from bootkiln.formats.corrupt import CorruptArtifact
from bootkiln.formats.fat import FatVolume

WRONG_BUILD = "a stage built for the wrong architecture; report this as a bootkiln bug"


def _elf_name(machine: int) -> str:
    return ELF_MACHINES.get(machine, f"ELF machine {machine}")


def require_elf(data: bytes, target: str, what: str, hint: str = WRONG_BUILD) -> None:
    try:
        machine = elf_machine(data[:64])
    except CorruptArtifact as exc:
        raise InternalError(f"{what}: {exc}", hint=hint) from None
    if machine != ARCHES[target].elf_machine:
        raise InternalError(f"{what} is built for {_elf_name(machine)}, but the target is {target}", hint=hint)


def require_elf_file(path: Path, target: str, what: str, hint: str = WRONG_BUILD) -> None:
    with path.open("rb") as handle:
        require_elf(handle.read(64), target, what, hint)


def require_modules(modules_tar: Path, target: str) -> int:
    """Every kernel module in the kernel stage's tar is an ELF object of the target; returns their count."""
    count = 0
    with tarfile.open(modules_tar) as archive:
        for info in archive:
            if not info.isfile() or not (info.name.endswith(".ko") or info.name.endswith(".ko.xz")):
                continue
            handle = archive.extractfile(info)
            assert handle is not None
            head = handle.read(64) if info.name.endswith(".ko") else lzma.LZMADecompressor().decompress(
                handle.read(), max_length=64)
            require_elf(head, target, f"kernel module {info.name}")
            count += 1
    return count


def require_kernel_image(path: Path, target: str, hint: str = WRONG_BUILD) -> None:
    with path.open("rb") as handle:
        head = handle.read(1 << 20)
    try:
        found = kernel_image_arch(head)
    except CorruptArtifact as exc:
        raise InternalError(f"{path.name}: {exc}", hint=hint) from None
    if found != ARCHES[target].kernel_image:
        raise InternalError(f"{path.name} is a kernel image of type {found!r}, but the target is {target}, "
                            f"which boots an {ARCHES[target].kernel_image!r}", hint=hint)


def require_pe(data: bytes, target: str, what: str) -> None:
    try:
        machine = pe_machine(data)
    except CorruptArtifact as exc:
        raise InternalError(f"{what}: {exc}", hint=WRONG_BUILD) from None
    if machine != ARCHES[target].pe_machine:
        found = PE_MACHINES.get(machine, f"PE machine {machine:#x}")
        raise InternalError(f"{what} is an EFI binary for {found}, but the target is {target}", hint=WRONG_BUILD)


def require_efi_image(image: Path, target: str) -> list[str]:
    """The FAT EFI image holds the target's removable-media loader, and every EFI binary in it is the
    target's; returns the binaries' paths."""
    found: list[str] = []
    with image.open("rb") as handle:
        volume = FatVolume(handle)
        for path, entry in volume.walk():
            if not path.upper().endswith(".EFI") or entry[11] & 0x10:
                continue
            size = int.from_bytes(entry[28:32], "little")
            require_pe(volume.content(volume.first_cluster(entry), size), target, f"{image.name}:{path}")
            found.append(path)
    loader = f"EFI/BOOT/{ARCHES[target].efi_boot_name}"
    if loader.upper() not in {path.upper().lstrip("/") for path in found}:
        raise InternalError(f"{image.name} has no {loader} (found: {', '.join(found) or 'none'})", hint=WRONG_BUILD)
    return found


def require_deb(path: Path, target: str, where: str) -> None:
    """A kernel package given by the user is for the target (or for all architectures)."""
    hint = f"use the {target} build of the package, or set debian.architecture to the package's architecture"
    try:
        architecture = deb_field(path, "Architecture")
    except (CorruptArtifact, OSError, lzma.LZMAError, tarfile.TarError) as exc:
        raise InputError(f"{where}: {path} is not a readable Debian package: {exc}", hint=hint) from None
    if architecture not in (target, "all"):
        raise InputError(f"{where}: {path} is a package for {architecture}, but debian.architecture is {target}",
                         hint=hint)
