"""How every task runs: errors reported once with their fault and hint, and an exit code for the shell.

SIGINT, SIGTERM and SIGHUP all stop a task the way Ctrl-C does (bootkiln/interrupts.py): every
cleanup runs, the interrupt is reported once, and the exit status is the shell's 128 + signal.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress

from bootkiln import interrupts
from bootkiln.console import Reporter
from bootkiln.errors import BootkilnError


def guarded(action: Callable[[Reporter], None]) -> int:
    reporter = Reporter()
    with interrupts.signals_interrupt():
        try:
            action(reporter)
        except BootkilnError as exc:
            reporter.error(exc)
            return exc.fault.exit_code
        except KeyboardInterrupt as exc:
            interrupt = interrupts.as_interrupted(exc)
            # A second signal now would cut the report short, and the status is decided already.
            with interrupts.signals_deferred():
                outcome = _clean_up_after_interrupt()
                # After SIGHUP the terminal may be gone; the exit status still tells.
                with suppress(OSError):
                    reporter.interrupted(interrupt.signal_name, outcome)
            return interrupt.exit_code
    return 0


def _clean_up_after_interrupt() -> str:
    """Remove what the unwinding could have missed (made just as the signal landed); say what became of it."""
    try:
        leftovers = interrupts.run_cleanups()
    except Exception as exc:  # the engine may be what went away
        return (f"could not check the Docker engine for this build's containers and volumes ({exc}); "
                "the next run removes them once this build's lease lapses; no partial result was kept")
    also = f" (also removed {', '.join(leftovers)})" if leftovers else ""
    return f"this build's containers, volumes and scratch folders are removed{also}; no partial result was kept"
