"""What every stage shares: its context, its result, and how it is cached."""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bootkiln.archive import ArchiveState
from bootkiln.builder import BuilderImage
from bootkiln.config import Profile
from bootkiln.console import Reporter
from bootkiln.engine import Upload
from bootkiln.paths import project_root
from bootkiln.runner import Runner

# Bump when the layout of cache entries changes, so old entries are never misread.
CACHE_FORMAT = "1"


@dataclass(frozen=True)
class StageContext:
    profile: Profile
    archive: ArchiveState
    builder: BuilderImage
    runner: Runner
    reporter: Reporter


@dataclass(frozen=True)
class StageResult:
    name: str
    key: str
    entry: Path
    cached: bool
    metadata: dict[str, Any]

    def artifact(self, name: str) -> Path:
        return self.entry / name


class Stage(Protocol):
    name: str
    outputs: tuple[str, ...]

    def key(self, ctx: StageContext) -> str: ...

    def build(self, ctx: StageContext, scratch: Path) -> dict[str, Any]: ...


def script_path(name: str) -> Path:
    return project_root() / "scripts" / name


def files_upload(files: dict[str, tuple[bytes, int]]) -> Upload:
    """Files for /bootkiln/ in the container, delivered through the Docker API (never bind mounts)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in sorted(files):
            data, mode = files[name]
            info = tarfile.TarInfo(f"bootkiln/{name}")
            info.size, info.mode = len(data), mode
            archive.addfile(info, io.BytesIO(data))
    return Upload("/", buffer.getvalue())
