"""What every comparison shares: the report that collects differences, the context that says how deep
to go, and the comparison of containers' members (metadata fields, content digests, order).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MAX_DEPTH = 4  # artifact -> decompressed -> member -> member's member
NESTED_MAX = 512 << 20  # members larger than this are not extracted for a nested comparison
DIGEST_SHOWN = 12


@dataclass(frozen=True)
class Difference:
    where: str  # "rootfs.tar: ./etc/machine-id", "boot.iso: /boot/initrd.img: init"
    what: str  # "mtime 1700000000 vs 1700000060", "only in first build"


class Report:
    """Collects differences: the first `limit` are kept, the rest only counted."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.shown: list[Difference] = []
        self.hidden = 0

    @property
    def room(self) -> int:
        return self.limit - len(self.shown)

    @property
    def count(self) -> int:
        return len(self.shown) + self.hidden

    def add(self, where: str, what: str) -> None:
        if len(self.shown) < self.limit:
            self.shown.append(Difference(where, what))
        else:
            self.hidden += 1

    def skip(self, count: int) -> None:
        self.hidden += count


@dataclass(frozen=True)
class Context:
    scratch: Path
    # Compares two files of any kind: how a member that differs is opened in turn. It is handed down
    # rather than imported so that the format modules need not import the module that imports them all.
    compare: Comparer
    depth: int = 0

    def deeper(self) -> Context:
        return Context(self.scratch, self.compare, self.depth + 1)

    def may_descend(self, report: Report, size: int) -> bool:
        # Nested detail is only worth extracting while it can still be shown.
        return self.depth < MAX_DEPTH and report.room > 0 and size <= NESTED_MAX

    @contextlib.contextmanager
    def pair(self) -> Iterator[tuple[Path, Path]]:
        paths: list[Path] = []
        try:
            for _ in range(2):
                handle, name = tempfile.mkstemp(dir=self.scratch)
                os.close(handle)
                paths.append(Path(name))
            yield paths[0], paths[1]
        finally:
            for path in paths:
                path.unlink(missing_ok=True)


Comparer = Callable[[str, Path, Path, Report, Context], None]


@dataclass(frozen=True)
class Entry:
    """One member of a container: its metadata as display strings, and its content's sha256."""

    name: str
    fields: dict[str, str] = field(default_factory=dict)
    digest: str | None = None
    size: int = 0


Extractor = Callable[[str, Path], None]  # writes the named member's content to a path


def unique(name: str, seen: dict[str, int]) -> str:
    # Archives may hold a name twice (the later one wins on extraction); keep both apart.
    seen[name] = seen.get(name, 0) + 1
    return name if seen[name] == 1 else f"{name} (copy {seen[name]})"


def short(digest: str | None) -> str:
    return "none" if digest is None else digest[:DIGEST_SHOWN] + "…"


def compare_fields(where: str, one: Mapping[str, str], two: Mapping[str, str], report: Report) -> None:
    # Fields that differ the same way (one clock read stamped into four dates) share a line.
    changes: dict[tuple[str, str], list[str]] = {}
    for key in [*one, *(key for key in two if key not in one)]:
        value_one, value_two = one.get(key, "(absent)"), two.get(key, "(absent)")
        if value_one != value_two:
            changes.setdefault((value_one, value_two), []).append(key)
    for (value_one, value_two), keys in changes.items():
        report.add(where, f"{', '.join(keys)} {value_one} vs {value_two}")


def compare_entries(label: str, first: list[Entry], second: list[Entry], report: Report, ctx: Context, *,
                    prefix: str = "", extract: tuple[Extractor, Extractor] | None = None,
                    hint: Callable[[str], str] | None = None) -> None:
    """Members only on one side, their differing fields and contents (opened in turn), then their order."""
    by_name = {entry.name: entry for entry in second}
    first_names = {entry.name for entry in first}
    for entry in first:
        where = f"{label}: {prefix}{entry.name}"
        other = by_name.get(entry.name)
        if other is None:
            report.add(where, "only in first build")
            continue
        compare_fields(where, entry.fields, other.fields, report)
        if entry.digest is not None and other.digest is not None and entry.digest != other.digest:
            note = hint(entry.name) if hint else ""
            report.add(where, f"content differs (sha256 {short(entry.digest)} vs {short(other.digest)}){note}")
            if extract and ctx.may_descend(report, max(entry.size, other.size)):
                with ctx.pair() as (path_one, path_two):
                    extract[0](entry.name, path_one)
                    extract[1](other.name, path_two)
                    ctx.compare(where, path_one, path_two, report, ctx.deeper())
    for entry in second:
        if entry.name not in first_names:
            report.add(f"{label}: {prefix}{entry.name}", "only in second build")
    common = set(by_name) & first_names
    order_one = [entry.name for entry in first if entry.name in common]
    order_two = [entry.name for entry in second if entry.name in common]
    for index, (name_one, name_two) in enumerate(zip(order_one, order_two, strict=True)):
        if name_one != name_two:
            report.add(f"{label}: {prefix.strip() or 'member'} order",
                       f"differs from position {index}: {name_one} vs {name_two}")
            break
