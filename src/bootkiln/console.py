"""Terminal output: stage headers with timings, prefixed command output, and error reports."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.markup import escape

from bootkiln.errors import BootkilnError


def _make_console() -> Console:
    # CI logs are not terminals; keep colours off there so lines stay greppable.
    return Console(stderr=False, highlight=False, soft_wrap=True,
                   no_color=bool(os.environ.get("NO_COLOR")) or not sys.stdout.isatty())


def mib(size: int) -> str:
    return f"{size / 1048576:.2f} MiB"


@dataclass
class StageTiming:
    name: str
    seconds: float
    cached: bool


@dataclass
class Reporter:
    """Everything bootkiln prints goes through here, so tasks look alike."""

    console: Console = field(default_factory=_make_console)
    quiet_output: bool = False
    timings: list[StageTiming] = field(default_factory=list)
    interrupted_stage: StageTiming | None = None
    # Names whose stages these are, when several builds print at once (invoke build-matrix).
    prefix: str = ""
    started: float = field(default_factory=time.monotonic)

    def info(self, message: str) -> None:
        self.console.print(escape(message))

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {escape(message)}")

    def line(self, stage: str, text: str) -> None:
        if not self.quiet_output:
            self.console.print(f"[dim]{escape(self._named(stage)):>10} |[/] {escape(text)}")

    def _named(self, stage: str) -> str:
        return f"{self.prefix}/{stage}" if self.prefix else stage

    @contextmanager
    def stage(self, stage: str, detail: str = "") -> Iterator[StageProgress]:
        progress = StageProgress(stage)
        name = self._named(stage)
        start = time.monotonic()
        suffix = f" [dim]{escape(detail)}[/]" if detail else ""
        self.console.print(f"[bold blue]▶[/] [bold]{escape(name)}[/]{suffix}")
        try:
            yield progress
        except KeyboardInterrupt:
            # Not a failure: the task layer reports the interrupt once, naming the innermost stage.
            if self.interrupted_stage is None:
                self.interrupted_stage = StageTiming(name, time.monotonic() - start, cached=False)
            raise
        except BaseException:
            elapsed = time.monotonic() - start
            self.console.print(f"[bold red]✘[/] [bold]{escape(name)}[/] failed after {elapsed:.1f}s")
            raise
        elapsed = time.monotonic() - start
        self.timings.append(StageTiming(stage, elapsed, progress.cached))
        how = "from cache" if progress.cached else progress.verb
        note = f" [dim]{escape(progress.note)}[/]" if progress.note else ""
        self.console.print(f"[bold green]✔[/] [bold]{escape(name)}[/] {how} in {elapsed:.1f}s{note}")

    def summary(self) -> None:
        # Stages run at once, so their times add up to more than the wait: both are shown.
        total = sum(t.seconds for t in self.timings)
        parts = ", ".join(f"{t.name} {t.seconds:.1f}s{' (cached)' if t.cached else ''}" for t in self.timings)
        wall = time.monotonic() - self.started
        self.console.print(f"[dim]timings: {escape(parts)}; stages {total:.1f}s, wall {wall:.1f}s[/]")

    def interrupted(self, cause: str, outcome: str) -> None:
        """The one report of an interrupt: which stage it cut short, by what, and what was cleaned up."""
        stage = self.interrupted_stage
        if stage is None:
            self.console.print(f"[bold red]✘[/] interrupted by {escape(cause)}; {escape(outcome)}")
        else:
            self.console.print(f"[bold red]✘[/] [bold]{escape(stage.name)}[/] interrupted by {escape(cause)} "
                               f"after {stage.seconds:.1f}s; {escape(outcome)}")

    def error(self, exc: BootkilnError) -> None:
        self.console.print(f"[bold red]error[/] ({exc.fault.value}): {escape(exc.message)}")
        for detail in exc.details():
            self.console.print(f"  {escape(detail)}")
        if exc.hint:
            self.console.print(f"[bold]hint:[/] {escape(exc.hint)}")


@dataclass
class StageProgress:
    name: str
    cached: bool = False
    note: str = ""
    verb: str = "built"
