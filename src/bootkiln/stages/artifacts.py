"""What stages hand each other: the names and formats of outputs that another stage reads.

A stage never imports another stage; when one consumes another's output, the shared name or
reader lives here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# GRUB's embedded config finds the ISO9660 filesystem by this file, on CD and on USB alike.
ISO_MARKER = "/bootkiln.id"
# A UEFI-only target's GRUB EFI modules (fetched for the target by the bootloader stage), from which
# the disk stage makes its own GRUB image.
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
