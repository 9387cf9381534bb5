"""The stage cache: content-addressed, atomically written, safe for builds running at once.

An entry is a folder `stages/<stage>/<key>/`. It is assembled under `tmp/` and renamed into place
only when complete, so a killed build can never leave an entry that looks finished. A lock per key
makes a second build of the same stage wait for the first and then reuse its result.

The cache's folder holds a CACHEDIR.TAG (the cache directory tag standard, which backup tools also
honour) naming bootkiln. `invoke clean` deletes only a folder that carries it, or a cache made before
the tag existed whose layout is exactly bootkiln's: BOOTKILN_CACHE may point anywhere by mistake.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootkiln.atomicfile import write_atomic
from bootkiln.errors import InputError

ENTRY_FILE = "entry.json"
MARKER_FILE = "CACHEDIR.TAG"
MARKER_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
               "# This file is a cache directory tag created by bootkiln: this folder is its stage cache.\n"
               "# `invoke clean` deletes the folder that holds this file.\n")
# The layout of a cache made before the tag existed, recognised strictly: folder -> what it may hold.
_STAGE = r"[a-z][a-z0-9-]*"
_KEY = r"[0-9a-f]{64}"
_LEGACY_LAYOUT = {
    "locks": (re.compile(rf"{_STAGE}-{_KEY}\.lock"), "file"),
    "stages": (re.compile(_STAGE), "dir"),
    "tmp": (re.compile(rf"{_STAGE}-[0-9a-f]{{16}}-[0-9a-f]{{8}}"), "dir"),
}


@dataclass(frozen=True)
class StageCache:
    root: Path

    def entry_path(self, stage: str, key: str) -> Path:
        return self.root / "stages" / stage / key

    def prepare(self) -> None:
        """Create the cache folder, tagged as ours; an untagged folder is tagged only if it is empty or ours."""
        self.root.mkdir(parents=True, exist_ok=True)
        marker = self.root / MARKER_FILE
        if not marker.exists() and _is_legacy_cache(self.root):
            write_atomic(marker, MARKER_TEXT)  # builds starting at once may both write it

    def is_ours(self) -> bool:
        """True for a folder bootkiln made as a cache: tagged, or exactly a cache of before the tag."""
        marker = self.root / MARKER_FILE
        if marker.is_file() and not marker.is_symlink():
            return marker.read_text(errors="replace") == MARKER_TEXT
        return _is_legacy_cache(self.root)

    def lookup(self, stage: str, key: str) -> Path | None:
        entry = self.entry_path(stage, key)
        return entry if (entry / ENTRY_FILE).is_file() else None

    def metadata(self, entry: Path) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((entry / ENTRY_FILE).read_text())
        return data

    @contextmanager
    def lock(self, stage: str, key: str) -> Iterator[bool]:
        """Hold the key's lock; yields True if we had to wait for another build."""
        self.prepare()
        locks = self.root / "locks"
        locks.mkdir(exist_ok=True)
        with (locks / f"{stage}-{key}.lock").open("a+") as handle:
            waited = False
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                waited = True
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield waited
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def writer(self, stage: str, key: str, metadata: dict[str, Any]) -> Iterator[Path]:
        """A scratch folder that becomes the entry on clean exit, and vanishes otherwise.

        Call it while holding `lock(stage, key)`: leftovers of killed builds for this key are then
        known to be dead, and are removed first.
        """
        self.prepare()
        scratch_root = self.root / "tmp"
        scratch_root.mkdir(exist_ok=True)
        prefix = f"{stage}-{key[:16]}-"
        for leftover in scratch_root.glob(f"{prefix}*"):
            shutil.rmtree(leftover, ignore_errors=True)
        scratch = scratch_root / f"{prefix}{uuid.uuid4().hex[:8]}"
        try:
            # Made inside the try: an interrupt right after mkdir still removes it.
            scratch.mkdir()
            yield scratch
            record = {"stage": stage, "key": key, "created": time.time(), **metadata}
            (scratch / ENTRY_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
            _seal_tree(scratch)
            final = self.entry_path(stage, key)
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                # An entry without entry.json is debris from an older bootkiln; complete ones win.
                if self.lookup(stage, key):
                    return
                shutil.rmtree(final)
            scratch.rename(final)
            _fsync_dir(final.parent)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def clean(self) -> None:
        """Delete the cache, if this folder is one bootkiln made; refuse any other folder."""
        if not self.root.exists() and not self.root.is_symlink():
            return
        if self.root.is_symlink() or not self.root.is_dir() or not self.is_ours():
            raise InputError(
                f"{self.root} is not a bootkiln stage cache (it has no bootkiln {MARKER_FILE} and does not hold "
                "only a cache's locks/, stages/ and tmp/): refusing to delete it",
                hint="BOOTKILN_CACHE names the cache folder; unset it or point it at a folder bootkiln made "
                     "as its cache, and delete this folder yourself if you mean to")
        shutil.rmtree(self.root)


def _is_legacy_cache(root: Path) -> bool:
    """An untagged folder that holds nothing but a bootkiln cache's own layout (or nothing at all)."""
    for child in root.iterdir():
        rule = _LEGACY_LAYOUT.get(child.name)
        if rule is None or child.is_symlink() or not child.is_dir():
            return False
        pattern, kind = rule
        for item in child.iterdir():
            is_kind = item.is_dir() if kind == "dir" else item.is_file()
            if item.is_symlink() or not is_kind or not pattern.fullmatch(item.name):
                return False
            if child.name == "stages" and not all(
                    key.is_dir() and not key.is_symlink() and re.fullmatch(_KEY, key.name) for key in item.iterdir()):
                return False
    return True


def _seal_tree(root: Path) -> None:
    """Make files read-only and durable before the entry becomes visible.

    Outputs in out/ are hard links to cache files, so read-only files keep an edit there from
    silently changing what the cache serves to the next build.
    """
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_symlink():
                continue
            path.chmod(path.stat().st_mode & ~0o222)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
