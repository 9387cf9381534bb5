"""Overlays: file trees copied over a rootfs, with modes and owners that do not depend on the checkout.

Git keeps only the executable bit, and a checkout's modes follow the user's umask, so bootkiln
never copies host modes: directories are 0755, files 0644 (0755 if executable), owned by root,
unless the profile's `rootfs.attrs` says otherwise. Later overlays win over earlier ones.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bootkiln.errors import InputError
from bootkiln.profile.loader import overlay_dir
from bootkiln.profile.schema import FileAttrs, Profile


@dataclass(frozen=True)
class OverlayEntry:
    path: str  # absolute path inside the image
    kind: Literal["dir", "file", "link"]
    mode: int
    uid: int
    gid: int
    source: Path
    target: str = ""

    def as_json(self) -> dict[str, object]:
        return {"path": self.path, "kind": self.kind, "mode": f"{self.mode:04o}", "uid": self.uid,
                "gid": self.gid, "target": self.target}


def plan_overlays(profile: Profile, part: Literal["rootfs", "initramfs"] = "rootfs") -> list[OverlayEntry]:
    """Every path the profile's overlays put in the rootfs (or initramfs), with its final mode and owner."""
    settings = profile.rootfs if part == "rootfs" else profile.initramfs
    return plan_tree(profile, settings.overlays, settings.attrs, f"{part}.overlays")


def plan_tree(profile: Profile, names: list[str], attrs: dict[str, FileAttrs], key: str) -> list[OverlayEntry]:
    """The merged plan of some overlay folders: later ones win; `attrs` set modes and owners."""
    part = key.split(".")[0]
    merged: dict[str, OverlayEntry] = {}
    for name in names:
        root = overlay_dir(profile, name, key)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for entry_name in sorted([*dirnames, *filenames]):
                source = Path(dirpath, entry_name)
                image_path = "/" + source.relative_to(root).as_posix()
                merged[image_path] = _default_entry(image_path, source)
    unknown = sorted(set(attrs) - set(merged))
    if unknown:
        raise InputError(
            f"{profile.where}: key '{part}.attrs' names paths no overlay provides: "
            + ", ".join(unknown),
            hint="attrs set modes of overlay files; check the path or add the file to an overlay",
        )
    for path, wanted in attrs.items():
        entry = merged[path]
        merged[path] = OverlayEntry(path, entry.kind, int(wanted.mode, 8), wanted.uid, wanted.gid, entry.source,
                                    entry.target)
    return [merged[path] for path in sorted(merged)]


def _default_entry(image_path: str, source: Path) -> OverlayEntry:
    info = source.lstat()
    if stat.S_ISLNK(info.st_mode):
        return OverlayEntry(image_path, "link", 0o777, 0, 0, source, str(source.readlink()))
    if stat.S_ISDIR(info.st_mode):
        return OverlayEntry(image_path, "dir", 0o755, 0, 0, source)
    if stat.S_ISREG(info.st_mode):
        return OverlayEntry(image_path, "file", 0o755 if info.st_mode & 0o111 else 0o644, 0, 0, source)
    raise InputError(f"overlay entry {source} is neither a file, a folder nor a symlink",
                     hint="overlays hold only regular files, folders and symlinks")


def overlay_archive(entries: list[OverlayEntry], mtime: int) -> bytes:
    """A byte-stable tar of the planned entries (paths relative, sorted, numeric owners)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.path.lstrip("/"))
            info.mode, info.uid, info.gid, info.mtime = entry.mode, entry.uid, entry.gid, mtime
            info.uname = info.gname = ""
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            elif entry.kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, entry.target
                archive.addfile(info)
            else:
                data = entry.source.read_bytes()
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
