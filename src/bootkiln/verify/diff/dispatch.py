"""One comparison per kind of artifact, and the fallback to bytes when a structure cannot be read."""

from __future__ import annotations

import lzma
import struct
import tarfile
import zlib
from pathlib import Path

import zstandard
from pycdlib.pycdlibexception import PyCdlibException

from bootkiln.verify.diff.binary import compare_bytes
from bootkiln.verify.diff.compressed import compare_compressed
from bootkiln.verify.diff.cpio import compare_cpio
from bootkiln.verify.diff.elf import compare_elf
from bootkiln.verify.diff.fat import compare_fat
from bootkiln.verify.diff.iso import compare_iso
from bootkiln.verify.diff.kinds import kind_of
from bootkiln.verify.diff.report import Comparer, Context, Report
from bootkiln.verify.diff.tar import compare_tar
from bootkiln.verify.diff.text import compare_text

# What a damaged or hostile input can raise while being parsed; each sends that artifact to the
# byte comparison instead of aborting the whole report.
_PARSE_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, IndexError, KeyError, EOFError, OSError, struct.error, tarfile.TarError, lzma.LZMAError,
    zlib.error, zstandard.ZstdError, PyCdlibException, RecursionError,
)

_COMPARERS: dict[str, Comparer] = {
    "tar": compare_tar, "cpio": compare_cpio, "gzip": compare_compressed, "xz": compare_compressed,
    "zstd": compare_compressed, "iso9660": compare_iso, "fat": compare_fat, "elf": compare_elf,
    "text": compare_text, "binary": compare_bytes,
}


def compare(label: str, first: Path, second: Path, report: Report, ctx: Context) -> None:
    """Compare two files by their kind; what cannot be read structurally is compared as bytes."""
    kinds = kind_of(first), kind_of(second)
    if kinds[0] != kinds[1]:
        report.add(label, f"kind {kinds[0]} vs {kinds[1]}")
        compare_bytes(label, first, second, report, ctx)
        return
    kind = kinds[0]
    before = report.count
    try:
        _COMPARERS[kind](label, first, second, report, ctx)
    except _PARSE_ERRORS as exc:
        report.add(label, f"structural {kind} comparison failed ({type(exc).__name__}: {exc}); comparing raw bytes")
        compare_bytes(label, first, second, report, ctx)
        return
    if report.count == before:
        # Some field this module does not read differs (padding, an unparsed table): show where.
        report.add(label, f"no {kind} structure differs, but the bytes do")
        compare_bytes(label, first, second, report, ctx)
