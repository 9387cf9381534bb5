"""Talk to a booted image's shell over its serial console: QEMU's `-serial stdio`, driven through a pipe."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

from bootkiln.profile.schema import BootMode
from bootkiln.verify.qemu import Accel, qemu_argv, uefi_vars


def shell_answers(mode: BootMode, image: Path, *, arch: str, accel: Accel, memory: int, marker: str,
                  timeout: float) -> tuple[bool, list[str]]:
    """Boot, wait for the marker, then type `echo SHELL-$((6*7))` on the serial line until a shell
    prints SHELL-42 (the typed line echoes as written, so only a shell's answer matches)."""
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []
    with uefi_vars(mode, None, arch) as (firmware, vars_copy):
        argv = qemu_argv(mode, image, accel=accel, memory=memory, firmware=firmware, vars_copy=vars_copy, arch=arch)
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        assert process.stdin is not None and process.stdout is not None
        output = process.stdout

        def read() -> None:
            for raw in output:
                lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        deadline, booted, next_try = time.monotonic() + timeout, False, 0.0
        try:
            while time.monotonic() < deadline:
                if booted and time.monotonic() >= next_try:
                    process.stdin.write(b"echo SHELL-$((6*7))\n")
                    process.stdin.flush()
                    next_try = time.monotonic() + 3
                try:
                    line = lines.get(timeout=1)
                except queue.Empty:
                    continue
                if line is None:
                    break
                seen.append(line)
                booted = booted or marker in line
                if booted and "SHELL-42" in line:
                    return True, seen[-40:]
            return False, seen[-40:]
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
