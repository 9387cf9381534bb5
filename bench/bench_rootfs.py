"""Cold and warm rootfs builds of the default profile, timed end to end through `invoke rootfs`.

Cold: empty stage cache (the builder image is reused if present; pass --cold-builder to remove it
first). Warm: the same command again with nothing changed, which must be a cache hit.

    .venv/bin/python bench/bench_rootfs.py [--runs 3] [--cold-builder]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed_rootfs(env: dict[str, str]) -> tuple[float, str]:
    started = time.monotonic()
    process = subprocess.run([sys.executable, "-m", "invoke", "rootfs"], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"invoke rootfs failed:\n{process.stdout[-3000:]}{process.stderr[-2000:]}")
    return elapsed, process.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold-builder", action="store_true", help="remove bootkiln builder images first")
    args = parser.parse_args()
    if args.cold_builder:
        images = subprocess.run(["docker", "images", "-q", "--filter", "reference=bootkiln-*"],
                                capture_output=True, text=True, check=True).stdout.split()
        if images:
            subprocess.run(["docker", "rmi", "-f", *images], capture_output=True, check=False)
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")
    cold: list[float] = []
    warm: list[float] = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bootkiln-bench-") as scratch:
            env = {**os.environ, "BOOTKILN_CACHE": f"{scratch}/cache", "BOOTKILN_OUT": f"{scratch}/out"}
            seconds, output = timed_rootfs(env)
            cold.append(seconds)
            seconds_warm, output_warm = timed_rootfs(env)
            if "rootfs from cache" not in output_warm:
                raise SystemExit("the warm build was not a cache hit")
            warm.append(seconds_warm)
            builder = "builder built" in output
            print(f"run {run + 1}: cold {cold[-1]:6.1f} s{' (incl. builder image)' if builder else ''}, "
                  f"warm {warm[-1]:5.2f} s")
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"cold rootfs: median {statistics.median(cold):.1f} s  (min {min(cold):.1f}, max {max(cold):.1f})")
    print(f"warm rootfs: median {statistics.median(warm):.2f} s  (min {min(warm):.2f}, max {max(warm):.2f})")
    print(f"cold/warm ratio: {statistics.median(cold) / statistics.median(warm):.0f}x")


if __name__ == "__main__":
    main()
