"""What a publishing target offers the publish tasks: another cloud is one new module behind this.

A target takes artifacts that a build has already made and checked (the raw disk image, the ISO)
and the build manifest that vouches for them, and returns lines describing what it published. The
tasks in commands/publish.py check the files and the manifest, choose the target and report; they
know nothing of any cloud's API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from bootkiln.console import Reporter
from bootkiln.publish.manifest import BuildManifest


@dataclass(frozen=True)
class Published:
    """What a target made: its identifier, whether an identical earlier publication was reused, and a report."""

    identifier: str
    reused: bool
    lines: list[str] = field(default_factory=list)


class PublishTarget(Protocol):
    name: str

    def check(self, what: Literal["image", "iso"]) -> None:
        """Raise InputError if the profile's settings for this target cannot publish `what`; sends nothing."""
        ...

    def publish_image(self, image: Path, build: BuildManifest, reporter: Reporter) -> Published:
        """Make the disk image bootable in the target (a machine image, a template...)."""
        ...

    def upload_iso(self, iso: Path, build: BuildManifest, reporter: Reporter) -> Published:
        """Store the ISO and its manifest where machines and people can fetch them."""
        ...
