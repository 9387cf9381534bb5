"""Errors that say whose fault a failure is, and what to do next.

Every error bootkiln raises on purpose is a BootkilnError. Its `kind` tells the user whether the
input (a profile, a flag), the environment (Docker, the network, a missing tool) or bootkiln itself
is at fault, or that a built image failed the checks it was tested with, and `hint` says what to try
next. The task layer maps kinds to exit codes: 2 input, 3 environment, 4 image checks, 70 internal.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from enum import Enum


class Fault(Enum):
    INPUT = "bad input"
    ENVIRONMENT = "environment"
    CHECKS = "the image failed its checks"
    INTERNAL = "internal error (a bootkiln bug)"

    @property
    def exit_code(self) -> int:
        return {Fault.INPUT: 2, Fault.ENVIRONMENT: 3, Fault.CHECKS: 4, Fault.INTERNAL: 70}[self]


def format_argv(argv: Sequence[str]) -> str:
    """A command as a line the user can copy into a shell."""
    return shlex.join(argv)


class BootkilnError(Exception):
    fault: Fault = Fault.INTERNAL

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def details(self) -> list[str]:
        """Extra lines shown under the message (command, output tail...)."""
        return []


class InputError(BootkilnError):
    fault = Fault.INPUT


class EnvironmentProblem(BootkilnError):
    fault = Fault.ENVIRONMENT


class InternalError(BootkilnError):
    fault = Fault.INTERNAL


class ImageChecksFailed(BootkilnError):
    """The build and the tools worked; the image does not pass the checks it was tested with."""

    fault = Fault.CHECKS

    def __init__(self, failed: Sequence[str], hint: str = "") -> None:
        count = f"{len(failed)} check{'s' if len(failed) != 1 else ''}" if failed else "some checks"
        super().__init__(f"{count} failed", hint)
        self.failed = list(failed)

    def details(self) -> list[str]:
        return [f"failed: {name}" for name in self.failed]


class CommandFailed(BootkilnError):
    """A command run by the runner exited non-zero."""

    fault = Fault.ENVIRONMENT

    def __init__(
        self,
        *,
        stage: str,
        where: str,
        argv: Sequence[str],
        status: int,
        tail: Sequence[str],
        hint: str = "",
    ) -> None:
        super().__init__(f"stage {stage}: command failed with exit status {status} ({where})", hint)
        self.stage = stage
        self.where = where
        self.argv = list(argv)
        self.status = status
        self.tail = list(tail)

    def details(self) -> list[str]:
        lines = [f"command: {format_argv(self.argv)}", f"exit status: {self.status}"]
        if self.tail:
            lines.append(f"last {len(self.tail)} lines of output:")
            lines.extend(f"  {line}" for line in self.tail)
        return lines
