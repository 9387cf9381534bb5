"""Reading one file out of a Debian package (.deb: an ar archive around data.tar.*) without dpkg,
so the host can look inside a user's kernel.deb before any container starts.
"""

from __future__ import annotations

import fnmatch
import tarfile
from pathlib import Path

from bootkiln.formats.corrupt import CorruptArtifact

_AR_MAGIC = b"!<arch>\n"
# tarfile's stream modes by the data member's suffix; data.tar.zst needs a library Python lacks.
_TAR_MODES = {"data.tar.xz": "r|xz", "data.tar.gz": "r|gz", "data.tar.bz2": "r|bz2", "data.tar": "r|"}


class UnreadableDeb(Exception):
    """The package's data member is compressed in a way this reader cannot open (zstd)."""


def deb_file(deb: Path, pattern: str) -> tuple[str, bytes] | None:
    """(name, bytes) of the first regular file in the package's data whose path matches `pattern`
    (fnmatch, e.g. './boot/vmlinuz-*'), or None."""
    with deb.open("rb") as handle:
        if handle.read(8) != _AR_MAGIC:
            raise CorruptArtifact(f"{deb}: not a Debian package (no ar header)")
        while header := handle.read(60):
            if len(header) < 60:
                break
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            try:
                size = int(header[48:58])
            except ValueError:
                raise CorruptArtifact(f"{deb}: a bad ar member header") from None
            start = handle.tell()
            if name.startswith("data.tar"):
                mode = _TAR_MODES.get(name)
                if mode is None:
                    raise UnreadableDeb(f"{deb}: {name} cannot be read here")
                with tarfile.open(fileobj=handle, mode=mode) as archive:  # type: ignore[call-overload]
                    for member in archive:
                        if member.isfile() and fnmatch.fnmatch(member.name, pattern):
                            extracted = archive.extractfile(member)
                            assert extracted is not None
                            return member.name, extracted.read()
                return None
            handle.seek(start + size + (size & 1))
    raise CorruptArtifact(f"{deb}: no data.tar member")
