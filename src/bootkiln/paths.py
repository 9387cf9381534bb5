"""Where bootkiln finds its own files and keeps its state.

Nothing here is hard-coded to an install directory: the project root is found from this file's
location (or BOOTKILN_HOME), so a checkout works from any path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bootkiln.errors import EnvironmentProblem


def project_root() -> Path:
    override = os.environ.get("BOOTKILN_HOME")
    root = Path(override) if override else Path(__file__).resolve().parents[2]
    if not (root / "scripts").is_dir() or not (root / "docker").is_dir():
        raise EnvironmentProblem(
            f"bootkiln's own files (scripts/, docker/) are not under {root}",
            hint="install bootkiln in editable mode from a checkout (pip install -e .), "
            "or set BOOTKILN_HOME to the checkout",
        )
    return root


@dataclass(frozen=True)
class Workspace:
    """The directories one build uses: a shared stage cache and a per-profile output folder."""

    cache: Path
    out: Path

    @classmethod
    def default(cls) -> Workspace:
        root = project_root()
        cache = Path(os.environ.get("BOOTKILN_CACHE", root / ".cache" / "bootkiln"))
        out = Path(os.environ.get("BOOTKILN_OUT", root / "out"))
        return cls(cache=cache.resolve(), out=out.resolve())

    def output_dir(self, profile_name: str) -> Path:
        return self.out / profile_name


def pki_root() -> Path:
    """Where generated Puppet CAs and keys live: BOOTKILN_PKI, or .cache/pki/ in the checkout.

    Never under out/, whose artifacts get uploaded and copied around; never under the stage cache,
    which `invoke clean` empties (a new CA would orphan every host the old one signed); and never
    derived from BOOTKILN_CACHE's parent, which may be a shared folder such as /tmp.
    """
    override = os.environ.get("BOOTKILN_PKI")
    return (Path(override) if override else project_root() / ".cache" / "pki").resolve()
