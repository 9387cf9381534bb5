"""The one error every reader in formats/ raises for input that breaks its format's rules."""

from __future__ import annotations


class CorruptArtifact(ValueError):
    """An artifact has the magic of a format but breaks its rules (truncated, offsets out of range)."""
