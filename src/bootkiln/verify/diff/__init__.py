"""Where two builds of one artifact differ: the structural diff behind `invoke verify-reproducible`.

diffoscope would need the builder container and a few hundred MB of tools, and the artifacts
bootkiln makes are few and simple, so they are read natively here: tar and cpio members, compressed
streams, ISO 9660 volume descriptors, directory records, El Torito and the hybrid MBR/GPT, FAT boot
sectors and directory entries, ELF sections. When a member's bytes differ it is compared in turn
(the initramfs inside the ISO, the files inside the initramfs), so the report ends at the smallest
thing that differs. Anything unrecognised, or too damaged to parse, is compared as byte ranges,
read in chunks so that two 170 MB tarballs never sit in memory together.

One module per format compares; the byte-level readers they use live in bootkiln.formats.
`dispatch` picks the comparison by the file's kind (`kinds`); `report` holds what they share.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bootkiln.formats.corrupt import CorruptArtifact
from bootkiln.verify.diff.binary import same_bytes
from bootkiln.verify.diff.dispatch import compare
from bootkiln.verify.diff.report import Context, Difference, Report

__all__ = ["CorruptArtifact", "Difference", "compare_artifacts", "describe"]


def compare_artifacts(name: str, first: Path, second: Path, *, limit: int = 50) -> list[Difference]:
    """Up to `limit` differences between two builds of the artifact `name`, [] if byte-identical.

    When more were found, one last Difference counts the ones left out.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if same_bytes(first, second):
        return []
    report = Report(limit)
    with tempfile.TemporaryDirectory(prefix="bootkiln-diff-") as scratch:
        compare(name, first, second, report, Context(Path(scratch), compare))
    if report.hidden:
        return [*report.shown, Difference("…", f"{report.hidden} more differences not shown")]
    return report.shown


def describe(differences: list[Difference]) -> str:
    """One line per difference for the terminal; control characters are escaped, never sent."""
    return "\n".join(f"  {_printable(item.where)}: {_printable(item.what)}" for item in differences)


def _printable(text: str) -> str:
    # Names and text lines come from the artifacts: an escape sequence in one must not reach the terminal.
    return "".join(char if char.isprintable() or char == "\t" else repr(char)[1:-1] for char in text)
