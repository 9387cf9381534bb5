"""What stages hand each other: the names and formats of outputs that another stage reads.

A stage never imports another stage; when one consumes another's output, the shared name or
reader lives here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from bootkiln.profile.schema import Profile

# GRUB's embedded config finds the ISO9660 filesystem by this file, on CD and on USB alike.
ISO_MARKER = "/bootkiln.id"
# The target's GRUB modules (<platform>/ for EFI, and i386-pc/ on amd64) and Debian's signed shim,
# MokManager and GRUB (signed/), fetched by the bootloader stage, from which the disk stage boots.
GRUB_MODULES = "grub-modules.tar"
# The installed system's kernel modules, which the kernel stage makes for installer profiles.
TARGET_MODULES = "target-modules.tar"
# What an installer carries for an offline install, and where it lives on its medium (the ISO, or
# the disk image's boot partition).
PAYLOAD_FILES = ("rootfs.tar.xz", "target-modules.tar.xz", "payload.txt")
PAYLOAD_DIR = "bootkiln-payload"


def kernel_facts(kernel_txt: Path) -> dict[str, Any]:
    """The kernel stage's kernel.txt: its version, package and module lists."""
    facts: dict[str, Any] = {"modules": [], "builtin": []}
    for line in kernel_txt.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "module":
            facts["modules"].append(value)
        elif key == "builtin":
            facts["builtin"].append(value)
        else:
            facts[key] = value
    return facts
# The uki stage makes one unsigned Unified Kernel Image per medium (their command lines differ) and
# the ukisign stage a signed copy of each: the bootloader stage puts the ISO's in the EFI image, the
# disk stage the disk's in the ESP, each as EFI/BOOT/BOOTX64.EFI.
UKI_MEDIA = ("iso", "disk")


def uki_unsigned(medium: str) -> str:
    return f"uki-{medium}.efi"


def uki_signed(medium: str) -> str:
    return f"uki-{medium}-signed.efi"


def disk_seed(profile: Profile) -> str:
    """What every GUID, UUID and serial of the disk image derives from (scripts/disk.sh)."""
    return profile.disk.seed or profile.name


def seeded_uuid(seed: str, what: str) -> str:
    """scripts/disk.sh's uuid_of: sha256("seed:what"), shaped as an RFC 4122 version 4 UUID."""
    x = hashlib.sha256(f"{seed}:{what}".encode()).hexdigest()
    return f"{x[0:8]}-{x[8:12]}-4{x[13:16]}-{(int(x[16], 16) & 3) | 8:x}{x[17:20]}-{x[20:32]}"


def disk_kernel_cmdline(profile: Profile) -> str:
    """The command line the disk image's kernel gets (scripts/disk.sh checks a UKI's against its own)."""
    disk = profile.disk
    if disk.layout == "installer":
        return f"{disk.cmdline} bootkiln.stage={profile.initramfs.stage}"
    return (f"root=UUID={seeded_uuid(disk_seed(profile), 'ext4-uuid')} rootfstype=ext4 "
            f"{disk.cmdline} bootkiln.stage={disk.stage}")
