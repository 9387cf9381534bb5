"""Text files: a unified diff, line by line, with unusual line endings spelled out."""

from __future__ import annotations

import difflib
from pathlib import Path

from bootkiln.verify.diff.report import Context, Report

DIFF_LINES = 40


def _line(line: str) -> str:
    # Line endings other than "\n" are the whole difference surprisingly often: show them.
    body = line.rstrip("\r\n")
    ending = line[len(body):]
    if ending == "\n":
        return body
    return body + (" (no newline at end)" if not ending else f" (ends {ending!r})")


def compare_text(label: str, first: Path, second: Path, report: Report, ctx: Context) -> None:
    lines_one = first.read_text(encoding="utf-8").splitlines(keepends=True)
    lines_two = second.read_text(encoding="utf-8").splitlines(keepends=True)
    diff = list(difflib.unified_diff(lines_one, lines_two, n=2))[2:]  # without the ---/+++ lines
    for line in diff[:DIFF_LINES]:
        report.add(label, _line(line) if line.startswith("@@") else line[0] + _line(line[1:]))
    if len(diff) > DIFF_LINES:
        report.add(label, f"{len(diff) - DIFF_LINES} more diff lines not shown")
