"""What the benchmarks share: running an invoke task as a whole process, and naming the machine."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_task(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run `invoke ARGS` from the project's root; its wall time and output. A failed task ends the benchmark."""
    started = time.monotonic()
    process = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env, capture_output=True,
                             text=True, check=False)
    elapsed = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"invoke {' '.join(args)} failed:\n{process.stdout[-4000:]}{process.stderr[-2000:]}")
    return elapsed, process.stdout


def machine_line() -> str:
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 30
    return (f"machine: {platform.machine()}, {os.cpu_count()} cores, {memory_gib} GiB, "
            f"python {platform.python_version()}")
