"""Where bootkiln finds its own files and keeps its state.

Nothing here is hard-coded to an install directory: the project root is found from this file's
location (or BOOTKILN_HOME), so a checkout works from any path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bootkiln.errors import EnvironmentProblem, InputError


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


def check_user_file(path: Path, what: str, *, hint: str = "") -> None:
    """A path named on the command line must be a regular file, or this InputError says what it is.

    The type is checked before the file is opened: opening a FIFO for reading would wait for a writer
    forever, and a folder, a device or a link loop is never what a flag means.
    """
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist", hint=hint) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}", hint=hint) from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{what} {path} is a folder, not a file", hint=hint)
    if not stat.S_ISREG(mode):
        raise InputError(f"{what} {path} is not a regular file (a FIFO, socket or device)", hint=hint)


def read_user_file(path: Path, what: str, *, hint: str = "") -> bytes:
    """The bytes of a file named on the command line (see check_user_file), or an InputError."""
    check_user_file(path, what, hint=hint)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}", hint=hint) from None
