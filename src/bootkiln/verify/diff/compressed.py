"""gzip, xz and zstd streams: unpacked and compared in turn, or, when only the compressed bytes
differ, reported as a compressor that is not deterministic along with the header fields it varied.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import lzma
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

import zstandard

from bootkiln.verify.diff.binary import CHUNK, compare_bytes
from bootkiln.verify.diff.kinds import kind_of
from bootkiln.verify.diff.report import MAX_DEPTH, Context, Report, compare_fields


def compare_compressed(label: str, first: Path, second: Path, report: Report, ctx: Context) -> None:
    kind = kind_of(first)
    if ctx.depth > MAX_DEPTH:  # compressed inside compressed inside...: stop unpacking
        compare_bytes(label, first, second, report, ctx)
        return
    header_one, header_two = _stream_header(kind, first), _stream_header(kind, second)
    with ctx.pair() as (plain_one, plain_two):
        digest_one, digest_two = _decompress(kind, first, plain_one), _decompress(kind, second, plain_two)
        if digest_one == digest_two:
            report.add(label, "compressed streams differ, contents identical: the compressor is not deterministic")
            compare_fields(f"{label}: {kind} header", header_one, header_two, report)
            sizes = first.stat().st_size, second.stat().st_size
            if sizes[0] != sizes[1]:
                report.add(label, f"compressed size {sizes[0]} vs {sizes[1]} bytes")
            return
        compare_fields(f"{label}: {kind} header", header_one, header_two, report)
        # The decompressed artifact keeps the name: "initrd.img: init" reads better than a layer name.
        ctx.compare(label, plain_one, plain_two, report, ctx.deeper())


def _decompress(kind: str, source: Path, destination: Path) -> str:
    digest = hashlib.sha256()
    with source.open("rb") as raw, _decompressor(kind, raw) as stream, destination.open("wb") as out:
        for block in iter(lambda: stream.read(CHUNK), b""):
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


class _Reader(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


@contextlib.contextmanager
def _decompressor(kind: str, raw: BinaryIO) -> Iterator[_Reader]:
    if kind == "gzip":
        with gzip.GzipFile(fileobj=raw, mode="rb") as gzip_stream:
            yield gzip_stream
    elif kind == "xz":
        with lzma.LZMAFile(raw, "rb") as xz_stream:
            yield xz_stream
    else:
        with zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as zstd_stream:
            yield zstd_stream


def _stream_header(kind: str, path: Path) -> dict[str, str]:
    """The header fields a compressor may vary between runs (time stamps, OS, checks, flags)."""
    with path.open("rb") as handle:
        head = handle.read(1024)
    if kind == "gzip" and len(head) >= 10:
        fields = {"flags": f"0x{head[3]:02x}", "mtime": str(int.from_bytes(head[4:8], "little")),
                  "extra flags": f"0x{head[8]:02x}", "OS": str(head[9])}
        if head[3] & 0x08 and not head[3] & 0x04:  # a file name and no extra field before it
            fields["file name"] = repr(head[10:].split(b"\0", 1)[0].decode("latin-1"))
        return fields
    if kind == "xz" and len(head) >= 8:
        return {"check": {0: "none", 1: "CRC32", 4: "CRC64", 10: "SHA-256"}.get(head[7] & 0x0F, str(head[7]))}
    if kind == "zstd" and len(head) >= 5:
        return {"frame header descriptor": f"0x{head[4]:02x}"}
    return {}
