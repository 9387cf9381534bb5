"""What goes wrong when a test NFS server is set up or started, with a hint."""

from __future__ import annotations

from collections.abc import Sequence


class NfsServerError(RuntimeError):
    """Base class: the NFS server could not be set up, or did not answer. ``hint`` says what to try next."""

    def __init__(self, message: str, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}\n  hint: {hint}" if hint else message)


class NfsEnvironmentError(NfsServerError):
    """This machine cannot run the server (missing packages, not root, port taken): fix the host, not the code."""


class NfsStartError(NfsServerError):
    """A daemon failed to start or to become ready. ``log_tail`` holds the relevant lines of its logs."""

    def __init__(self, message: str, log_tail: Sequence[str] = (), hint: str = "") -> None:
        self.log_tail = list(log_tail)
        super().__init__(message, hint)
        if self.log_tail:
            self.args = (self.args[0] + "\n  from the logs:\n" + "\n".join(f"    {x}" for x in self.log_tail),)
