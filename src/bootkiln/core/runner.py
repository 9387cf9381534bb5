"""The one way bootkiln runs a command: argv lists, on the host or in a builder container.

Output streams live, each line prefixed with its stage. A failure is reported once, as a
command line you can copy, with the exit status, the last lines of output and a hint.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bootkiln.console import Reporter
from bootkiln.core.engine import Engine, Network, Upload, split_lines
from bootkiln.errors import CommandFailed, EnvironmentProblem

TAIL_LINES = 25


@dataclass(frozen=True)
class WatchResult:
    matched: bool
    seconds: float
    tail: list[str]
    status: int | None  # None: still running when stopped


@dataclass(frozen=True)
class Host:
    cwd: Path | None = None
    env: Mapping[str, str] | None = None
    # Hand the terminal to the command (pytest, mypy) instead of prefixing its lines.
    passthrough: bool = False

    def describe(self) -> str:
        return "on the host"


@dataclass(frozen=True)
class Builder:
    """A fresh builder container: image, network, named volumes and files to upload first."""

    image: str
    network: Network = "none"
    volumes: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    uploads: Sequence[Upload] = ()
    collect: Sequence[tuple[str, Path]] = ()

    def describe(self) -> str:
        return f"in builder container {self.image}, network {self.network}"


@dataclass
class Runner:
    reporter: Reporter
    engine: Engine | None = None

    def run(self, argv: Sequence[str], *, stage: str, where: Host | Builder, hint: str = "",
            missing_hint: str = "") -> list[str]:
        """Run argv; return its output lines; raise CommandFailed with the tail on non-zero exit."""
        captured: list[str] = []
        tail: deque[str] = deque(maxlen=TAIL_LINES)

        def on_line(text: str) -> None:
            captured.append(text)
            tail.append(text)
            self.reporter.line(stage, text)

        if isinstance(where, Host):
            status = self._run_on_host(argv, where, on_line, missing_hint)
        else:
            if self.engine is None:
                raise EnvironmentProblem("internal: a container step ran without a Docker engine")
            status = self.engine.run(where.image, argv, network=where.network, on_line=on_line,
                                     volumes=where.volumes, env=where.env, uploads=where.uploads,
                                     collect=where.collect)
        if status != 0:
            raise CommandFailed(stage=stage, where=where.describe(), argv=argv, status=status,
                                tail=list(tail), hint=hint)
        return captured

    def watch(self, argv: Sequence[str], *, stage: str, until: Callable[[str], bool], timeout: float,
              clean: Callable[[str], str] = lambda line: line, quiet: bool = False) -> WatchResult:
        """Run a long-lived host command (a VM) until a line satisfies `until`, it exits, or time runs out.

        The command is stopped afterwards in every case; its output streams with the stage prefix.
        """
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        lines: queue.Queue[str | None] = queue.Queue()
        started = time.monotonic()
        try:
            process = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise EnvironmentProblem(f"command not found: {argv[0]}") from None

        def pump() -> None:
            stream = process.stdout
            assert stream is not None
            # os.read returns what is there, so a VM's partial line is not held back.
            for raw in split_lines(iter(lambda: os.read(stream.fileno(), 65536), b"")):
                lines.put(raw)
            lines.put(None)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        matched = False
        try:
            while (remaining := timeout - (time.monotonic() - started)) > 0:
                try:
                    raw = lines.get(timeout=min(remaining, 1.0))
                except queue.Empty:
                    continue
                if raw is None:
                    break
                text = clean(raw)
                if not text.strip():
                    continue
                tail.append(text)
                if not quiet:
                    self.reporter.line(stage, text)
                if until(text):
                    matched = True
                    break
        finally:
            elapsed = time.monotonic() - started
            if process.poll() is None:
                process.kill()
            process.wait()
            reader.join(timeout=5)
        return WatchResult(matched, elapsed, list(tail), process.returncode if not matched else None)

    @staticmethod
    def _run_on_host(argv: Sequence[str], where: Host, on_line: Callable[[str], None], missing_hint: str) -> int:
        pipe = None if where.passthrough else subprocess.PIPE
        if where.cwd is not None and not where.cwd.is_dir():
            raise EnvironmentProblem(f"cannot run {argv[0]}: working folder {where.cwd} does not exist")
        try:
            process = subprocess.Popen(
                list(argv), cwd=where.cwd, env=dict(where.env) if where.env is not None else None,
                stdout=pipe, stderr=subprocess.STDOUT if pipe else None, stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise EnvironmentProblem(f"command not found: {argv[0]}",
                                     hint=missing_hint or f"install {argv[0]} on this host") from None
        except PermissionError as exc:
            raise EnvironmentProblem(f"cannot execute {argv[0]}: {exc.strerror}",
                                     hint="check the file's executable bit and the folder's permissions") from None
        with process:
            try:
                for raw in process.stdout or ():
                    on_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
                process.wait()
            except BaseException:
                # Interrupted (SIGTERM reaches only us, not our children): the command must not outlive the build.
                process.terminate()
                raise
        return process.returncode
