"""How every task runs: errors reported once with their fault and hint, and an exit code for the shell."""

from __future__ import annotations

from collections.abc import Callable

from bootkiln.console import Reporter
from bootkiln.errors import BootkilnError


def guarded(action: Callable[[Reporter], None]) -> int:
    reporter = Reporter()
    try:
        action(reporter)
    except BootkilnError as exc:
        reporter.error(exc)
        return exc.fault.exit_code
    except KeyboardInterrupt:
        reporter.info("interrupted; no partial result was kept")
        return 130
    return 0
