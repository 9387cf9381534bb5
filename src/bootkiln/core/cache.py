"""The stage cache: content-addressed, atomically written, safe for builds running at once.

An entry is a folder `stages/<stage>/<key>/`. It is assembled under `tmp/` and renamed into place
only when complete, so a killed build can never leave an entry that looks finished. A lock per key
makes a second build of the same stage wait for the first and then reuse its result.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENTRY_FILE = "entry.json"


@dataclass(frozen=True)
class StageCache:
    root: Path

    def entry_path(self, stage: str, key: str) -> Path:
        return self.root / "stages" / stage / key

    def lookup(self, stage: str, key: str) -> Path | None:
        entry = self.entry_path(stage, key)
        return entry if (entry / ENTRY_FILE).is_file() else None

    def metadata(self, entry: Path) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((entry / ENTRY_FILE).read_text())
        return data

    @contextmanager
    def lock(self, stage: str, key: str) -> Iterator[bool]:
        """Hold the key's lock; yields True if we had to wait for another build."""
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
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
        scratch_root = self.root / "tmp"
        scratch_root.mkdir(parents=True, exist_ok=True)
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
        if self.root.exists():
            shutil.rmtree(self.root)


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
