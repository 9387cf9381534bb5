"""Content fingerprints for cache keys: everything that can change a stage's output goes in."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Fingerprint:
    """An order-sensitive hash of named parts; each part is length-prefixed so parts cannot blur."""

    def __init__(self, kind: str) -> None:
        self._digest = hashlib.sha256()
        self.add_text("kind", kind)

    def _add(self, label: str, payload: bytes) -> None:
        for piece in (label.encode(), payload):
            self._digest.update(len(piece).to_bytes(8, "big"))
            self._digest.update(piece)

    def add_text(self, label: str, text: str) -> Fingerprint:
        self._add(label, text.encode())
        return self

    def add_json(self, label: str, value: Any) -> Fingerprint:
        self._add(label, json.dumps(value, sort_keys=True, separators=(",", ":")).encode())
        return self

    def add_file(self, label: str, path: Path) -> Fingerprint:
        self._add(label, path.read_bytes())
        return self

    def add_tree(self, label: str, root: Path) -> Fingerprint:
        """Paths, types, executable bits, symlink targets and contents of every file under root."""
        entries: list[list[str | bool]] = []
        for dirpath, dirnames, filenames in os.walk(root):
            # Byte-code caches come and go with the interpreter; they are never an input.
            dirnames[:] = sorted(name for name in dirnames if name != "__pycache__")
            filenames = [name for name in filenames if not name.endswith(".pyc")]
            for name in sorted([*dirnames, *filenames]):
                path = Path(dirpath, name)
                rel = path.relative_to(root).as_posix()
                info = path.lstat()
                if stat.S_ISLNK(info.st_mode):
                    entries.append(["link", rel, str(path.readlink())])
                elif stat.S_ISDIR(info.st_mode):
                    entries.append(["dir", rel])
                elif stat.S_ISREG(info.st_mode):
                    executable = bool(info.st_mode & 0o111)
                    entries.append(["file", rel, executable, sha256_file(path)])
                else:
                    # Device nodes, FIFOs and sockets (a root folder has them): never open them.
                    entries.append(["special", rel, f"{stat.S_IFMT(info.st_mode):o}", str(info.st_rdev)])
        self.add_json(label, entries)
        return self

    def hexdigest(self) -> str:
        return self._digest.hexdigest()
