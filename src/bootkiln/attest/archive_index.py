"""The .deb sha256 and source package of a package, read from the archive state a build pinned.

The builder image and the boot-loader packages are listed by dpkg, which keeps no .deb digest, and
the kernel stage keeps no control file. The archive itself knows both: its `Packages` index lists,
for every (name, version, architecture), the .deb's SHA256 and its Source. The index is trusted
only as far as the pinned Release file vouches for it: its sha256 must be the one that Release
file lists, or nothing is read from it.

The parsed index is cached per Release sha256 (an archive state never changes under one hash).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bootkiln.atomicfile import write_atomic
from bootkiln.core.archive import (
    RETRY_DELAYS,
    ArchiveState,
    Fetch,
    NotFound,
    _default_fetch,
    fetch_with_retries,
)
from bootkiln.errors import EnvironmentProblem

# The compressed forms apt understands, best first; the first one the Release file lists is used.
INDEX_FORMATS: dict[str, Callable[[bytes], bytes]] = {
    ".xz": lzma.decompress, ".gz": gzip.decompress, "": lambda data: data}
NO_ARCHITECTURE = frozenset({"", "all", "source"})
CACHE_FORMAT = 1


@dataclass(frozen=True)
class IndexEntry:
    """What the archive says of one .deb."""

    sha256: str
    source: str
    source_version: str


def release_checksums(release: str) -> dict[str, tuple[str, int]]:
    """path -> (sha256, size) from a Release or InRelease file's SHA256 section."""
    found: dict[str, tuple[str, int]] = {}
    in_section = False
    for line in release.splitlines():
        if not line.startswith(" "):
            in_section = line.rstrip() == "SHA256:"
            continue
        if in_section:
            fields = line.split()
            if len(fields) == 3 and re.fullmatch(r"[0-9a-f]{64}", fields[0]) and fields[1].isdigit():
                found[fields[2]] = (fields[0], int(fields[1]))
    return found


def _entry_key(name: str, version: str, architecture: str) -> str:
    return f"{name}\t{version}\t{architecture}"


def parse_packages(text: str) -> dict[str, str]:
    """A Packages index as 'name<TAB>version<TAB>arch' -> 'sha256<TAB>source<TAB>source version'.

    Source may carry the source's version in parentheses; without one it is the binary's version,
    and without a Source field the source package is the binary package itself.
    """
    entries: dict[str, str] = {}
    for paragraph in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line and line[0] not in " \t":
                name, _, value = line.partition(":")
                if name in ("Package", "Version", "Architecture", "SHA256", "Source"):
                    fields[name] = value.strip()
        if not {"Package", "Version", "Architecture", "SHA256"} <= fields.keys():
            continue
        source, source_version = fields["Package"], fields["Version"]
        if fields.get("Source"):
            match = re.fullmatch(r"(\S+)(?:\s+\((\S+)\))?", fields["Source"])
            if match:
                source, source_version = match.group(1), match.group(2) or fields["Version"]
        entries[_entry_key(fields["Package"], fields["Version"], fields["Architecture"])] = (
            f"{fields['SHA256']}\t{source}\t{source_version}")
    return entries


@dataclass
class ArchiveIndex:
    """The Packages indexes of one archive state, fetched and parsed when first needed.

    components: the components the build's sources.list names; cache: the folder (under the stage
    cache) where parsed indexes are kept, one file per Release sha256, component and architecture.
    """

    state: ArchiveState
    components: Sequence[str]
    cache: Path | None = None
    fetch: Fetch = _default_fetch
    delays: Sequence[float] = RETRY_DELAYS
    _release: tuple[str, dict[str, tuple[str, int]]] | None = field(default=None, init=False, repr=False)
    _indexes: dict[str, dict[str, str]] = field(default_factory=dict, init=False, repr=False)

    @property
    def release_url(self) -> str:
        return f"{self.state.mirror}/dists/{self.state.suite}/InRelease"

    def release(self) -> tuple[str, dict[str, tuple[str, int]]]:
        """The pinned Release file's sha256 and checksums: the bytes the build resolved, or fetched again
        and refused unless they hash to what the build pinned (a snapshot pins by its time)."""
        if self._release is None:
            data = self.state.release_data
            if data is None:
                data = self._cached_release() if self.state.snapshot else None
            if data is None:
                data = fetch_with_retries(self.release_url, what=f"the Release file of {self.state.suite}",
                                          fetch=self.fetch, delays=self.delays)
            digest = hashlib.sha256(data).hexdigest()
            if self.state.release_sha256 is not None and digest != self.state.release_sha256:
                raise EnvironmentProblem(
                    f"{self.release_url} has sha256 {digest}, not the {self.state.release_sha256} this build "
                    "pinned: the archive changed since, so its package index cannot describe this build",
                    hint="build again to pin the archive's current state, or pin a debian.snapshot")
            if self.state.snapshot and self.cache is not None:
                write_atomic(self._snapshot_release_path(), data)
            self._release = (digest, release_checksums(data.decode("utf-8", "replace")))
        return self._release

    def _snapshot_release_path(self) -> Path:
        assert self.cache is not None
        where = hashlib.sha256(self.release_url.encode()).hexdigest()
        return self.cache / f"release-{where}"

    def _cached_release(self) -> bytes | None:
        """A snapshot's Release file never changes: once fetched, it is read from the cache."""
        if self.cache is None:
            return None
        path = self._snapshot_release_path()
        return path.read_bytes() if path.is_file() else None

    def lookup(self, name: str, version: str, architecture: str, native: str) -> IndexEntry | None:
        """The archive's entry for this exact .deb; an `all` package is listed in the native arch's index."""
        where = native if architecture in NO_ARCHITECTURE else architecture
        if architecture == "source" or where in NO_ARCHITECTURE:
            return None
        value = self.index(where).get(_entry_key(name, version, architecture))
        if value is None:
            return None
        sha256, source, source_version = value.split("\t")
        return IndexEntry(sha256, source, source_version)

    def index(self, architecture: str) -> dict[str, str]:
        """Every component's Packages index for one architecture, merged."""
        if architecture not in self._indexes:
            merged: dict[str, str] = {}
            for component in self.components:
                merged.update(self._component_index(component, architecture))
            self._indexes[architecture] = merged
        return self._indexes[architecture]

    def _component_index(self, component: str, architecture: str) -> dict[str, str]:
        digest, checksums = self.release()
        path = None
        if self.cache is not None:
            path = self.cache / f"packages-{digest}-{component}-{architecture}.json"
            if path.is_file():
                try:
                    cached = json.loads(path.read_text())
                    if cached.get("format") == CACHE_FORMAT:
                        return dict(cached["entries"])
                except (ValueError, KeyError, TypeError, AttributeError):
                    pass  # a damaged cache file is made again
        entries = self._fetch_index(component, architecture, checksums)
        if path is not None:
            write_atomic(path, json.dumps({"format": CACHE_FORMAT, "entries": entries}, sort_keys=True).encode())
        return entries

    def _fetch_index(self, component: str, architecture: str,
                     checksums: dict[str, tuple[str, int]]) -> dict[str, str]:
        """Fetch and verify one Packages index; a component or architecture the suite lacks is empty."""
        base = f"{component}/binary-{architecture}/Packages"
        missing: NotFound | None = None
        for suffix, decompress in INDEX_FORMATS.items():
            if base + suffix not in checksums:
                continue
            url = f"{self.state.mirror}/dists/{self.state.suite}/{base}{suffix}"
            try:
                data = fetch_with_retries(url, what=f"the package index {base}{suffix} of {self.state.suite}",
                                          fetch=self.fetch, delays=self.delays)
            except NotFound as exc:  # a mirror may keep only some of the forms its Release file lists
                missing = exc
                continue
            expected, size = checksums[base + suffix]
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected or len(data) != size:
                raise EnvironmentProblem(
                    f"{url} does not match the pinned Release file: sha256 {actual} ({len(data)} bytes), "
                    f"the Release file lists {expected} ({size} bytes); refusing to read it",
                    hint="the mirror or a proxy between served other bytes than the archive state the build "
                    "pinned: check http_proxy and the mirror, then publish again")
            return parse_packages(decompress(data).decode("utf-8", "replace"))
        if missing is not None:
            raise missing
        return {}


def native_architecture(architectures: Iterable[str], fallback: str) -> str:
    """The architecture a set of installed packages was made for: the commonest one that is not `all`."""
    counts: dict[str, int] = {}
    for architecture in architectures:
        if architecture not in NO_ARCHITECTURE:
            counts[architecture] = counts.get(architecture, 0) + 1
    return max(sorted(counts), key=lambda a: counts[a]) if counts else fallback
