"""arm64 benchmark: the arm64 rescue ISO cold against the amd64 one, and arm64 boot to the marker.

    .venv/bin/python bench/bench_arm64.py

Both builds start from an empty stage cache with the builder image already made (it is shared),
so the figures compare the stages: on an amd64 builder the arm64 busybox is cross-compiled and the
arm64 kernel and GRUB are unpacked, never run. The target is arm64 <= 1.5x amd64. The boot runs
qemu-system-aarch64 (virt, cortex-a72, AAVMF) under TCG on this host.
"""

from __future__ import annotations

import os
import platform
import re
import tempfile

from benchlib import run_task


def cold_iso(profile: str, scratch: str) -> tuple[float, str]:
    env = {**os.environ, "BOOTKILN_CACHE": f"{scratch}/{profile}/cache", "BOOTKILN_OUT": f"{scratch}/{profile}/out"}
    seconds, output = run_task(["build-iso", "--profile", profile], env)
    timings = next((line for line in output.splitlines() if line.startswith("timings:")), "timings: ?")
    return seconds, timings


def main() -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="bootkiln-bench-arm64-") as scratch:
        run_task(["builder"], dict(os.environ))  # made once, outside the timings
        amd64, amd64_timings = cold_iso("rescue", scratch)
        arm64, arm64_timings = cold_iso("rescue-arm64", scratch)
        print(f"cold rescue ISO, amd64: {amd64:6.1f} s  ({amd64_timings})")
        print(f"cold rescue ISO, arm64: {arm64:6.1f} s  ({arm64_timings})")
        print(f"arm64 / amd64: {arm64 / amd64:.2f}x (target <= 1.5x)")
        env = {**os.environ, "BOOTKILN_CACHE": f"{scratch}/rescue-arm64/cache",
               "BOOTKILN_OUT": f"{scratch}/rescue-arm64/out"}
        _, output = run_task(["boot-test", "--profile", "rescue-arm64"], env)
        for line in output.splitlines():
            if re.match(r"^uefi-(cd|usb)\s+passed", line):
                print(f"arm64 boot (TCG) to the marker: {line.strip()}")


if __name__ == "__main__":
    main()
