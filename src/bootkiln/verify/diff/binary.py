"""Bytes as bytes: streaming digests and copies, and the ranges where two files differ.

Files are read in chunks so that two 170 MB tarballs never sit in memory together.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

from bootkiln.formats.corrupt import CorruptArtifact
from bootkiln.verify.diff.report import Context, Report

CHUNK = 1 << 20
MERGE_GAP = 16  # differing bytes at most this far apart are reported as one range

# A run of differing bytes in an XOR of two blocks, swallowing equal gaps of up to MERGE_GAP bytes.
_RUN = re.compile(rb"[^\x00]+(?:\x00{1,%d}[^\x00]+)*" % MERGE_GAP)


def same_bytes(first: Path, second: Path) -> bool:
    if first.stat().st_size != second.stat().st_size:
        return False
    with first.open("rb") as one, second.open("rb") as two:
        while True:
            block = one.read(CHUNK)
            if block != two.read(CHUNK):
                return False
            if not block:
                return True


def sha256_stream(stream: IO[bytes] | BinaryIO, size: int | None = None) -> str:
    digest = hashlib.sha256()
    remaining = size
    while remaining is None or remaining > 0:
        block = stream.read(CHUNK if remaining is None else min(CHUNK, remaining))
        if not block:
            if remaining:
                raise CorruptArtifact(f"data ends {remaining} bytes early")
            break
        digest.update(block)
        if remaining is not None:
            remaining -= len(block)
    return digest.hexdigest()


def copy_stream(stream: IO[bytes] | BinaryIO, destination: Path, size: int | None = None) -> None:
    remaining = size
    with destination.open("wb") as out:
        while remaining is None or remaining > 0:
            block = stream.read(CHUNK if remaining is None else min(CHUNK, remaining))
            if not block:
                break
            out.write(block)
            if remaining is not None:
                remaining -= len(block)


def runs(one: bytes, two: bytes, base: int = 0) -> tuple[int, list[tuple[int, int]]]:
    """How many bytes of two equally long blocks differ, and the [start, end) ranges (gaps up to MERGE_GAP merged)."""
    if one == two:
        return 0, []
    # XOR as big integers runs in C; counting zeros and the regex that finds non-zero runs do too.
    xor = (int.from_bytes(one, "big") ^ int.from_bytes(two, "big")).to_bytes(len(one), "big")
    return len(xor) - xor.count(0), [(base + match.start(), base + match.end()) for match in _RUN.finditer(xor)]


def _merged(ranges: Iterator[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Merge ranges (in order) closer than MERGE_GAP: the regex cannot see across block borders."""
    current: tuple[int, int] | None = None
    for start, end in ranges:
        if current is not None and start - current[1] <= MERGE_GAP:
            current = (current[0], end)
            continue
        if current is not None:
            yield current
        current = (start, end)
    if current is not None:
        yield current


def span(start: int, end: int) -> str:
    return f"byte 0x{start:x} differs" if end - start == 1 else f"bytes 0x{start:x}-0x{end - 1:x} differ"


def compare_bytes(label: str, first: Path, second: Path, report: Report, ctx: Context) -> None:
    sizes = first.stat().st_size, second.stat().st_size
    common = min(sizes)
    if sizes[0] != sizes[1]:
        report.add(label, f"size {sizes[0]} vs {sizes[1]} bytes ({sizes[1] - sizes[0]:+d})")
        which = "first" if sizes[0] > sizes[1] else "second"
        report.add(label, f"bytes 0x{common:x}-0x{max(sizes) - 1:x} only in the {which} build")
    keep = max(report.room - 1, 0)  # one line goes to the totals
    kept: list[tuple[int, int]] = []
    total_ranges = 0
    differing = 0

    def block_runs() -> Iterator[tuple[int, int]]:
        nonlocal differing
        offset = 0
        with first.open("rb") as one, second.open("rb") as two:
            while offset < common:
                size = min(CHUNK, common - offset)
                block_one, block_two = one.read(size), two.read(size)
                if len(block_one) != size or len(block_two) != size:
                    raise OSError(f"{label}: a file changed size while being compared")
                count, found = runs(block_one, block_two, offset)
                differing += count
                yield from found
                offset += size

    for found in _merged(block_runs()):
        total_ranges += 1
        if len(kept) < keep:
            kept.append(found)
    if total_ranges:
        report.add(label, f"{differing} of {common} bytes differ, in {total_ranges} "
                          f"range{'s' if total_ranges != 1 else ''}")
    for start, end in kept:
        report.add(label, span(start, end))
    report.skip(total_ranges - len(kept))
