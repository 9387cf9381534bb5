"""arm64 benchmark: the arm64 rescue ISO cold against the amd64 one, arm64 boot to the marker, and the
arm64 rescue ISO built by an emulated arm64 builder against this host's native builder.

    .venv/bin/python bench/bench_arm64.py

Both builds start from an empty stage cache with the builder image already made (it is shared),
so the figures compare the stages: on an amd64 builder the arm64 busybox is cross-compiled and the
arm64 kernel and GRUB are unpacked, never run. The target is arm64 <= 1.5x amd64. The boot runs
qemu-system-aarch64 (virt, cortex-a72, AAVMF) under TCG on this host.

The emulated builder (BOOTKILN_BUILDER_ARCH=arm64) is what an arm64 host runs, under qemu-user here:
its figure is an upper bound for a native arm64 machine, and its ISO must have the native build's sha256.
BENCH_SKIP_EMULATED=1 leaves it out (it takes about a quarter of an hour on 2 cores).
"""

from __future__ import annotations

import os
import platform
import re
import tempfile

from benchlib import run_task


def cold_iso(profile: str, scratch: str, builder_arch: str = "") -> tuple[float, str, str]:
    folder = f"{scratch}/{profile}{'-' + builder_arch if builder_arch else ''}"
    env = {**os.environ, "BOOTKILN_CACHE": f"{folder}/cache", "BOOTKILN_OUT": f"{folder}/out",
           "BOOTKILN_BUILDER_ARCH": builder_arch}
    seconds, output = run_task(["build-iso", "--profile", profile], env)
    timings = next((line for line in output.splitlines() if line.startswith("timings:")), "timings: ?")
    digest = next((line.split()[-1] for line in output.splitlines() if line.strip().startswith("sha256 ")), "?")
    return seconds, timings, digest


def main() -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="bootkiln-bench-arm64-") as scratch:
        run_task(["builder"], {**os.environ, "BOOTKILN_BUILDER_ARCH": ""})  # made once, outside the timings
        amd64, amd64_timings, _ = cold_iso("rescue", scratch)
        arm64, arm64_timings, arm64_sha = cold_iso("rescue-arm64", scratch)
        print(f"cold rescue ISO, amd64: {amd64:6.1f} s  ({amd64_timings})")
        print(f"cold rescue ISO, arm64: {arm64:6.1f} s  ({arm64_timings})")
        print(f"arm64 / amd64: {arm64 / amd64:.2f}x (target <= 1.5x)")
        if os.environ.get("BENCH_SKIP_EMULATED") != "1":
            run_task(["builder", "--profile", "rescue-arm64"], {**os.environ, "BOOTKILN_BUILDER_ARCH": "arm64"})
            emulated, emulated_timings, emulated_sha = cold_iso("rescue-arm64", scratch, "arm64")
            print(f"cold rescue ISO, arm64, emulated arm64 builder: {emulated:6.1f} s  ({emulated_timings})")
            print(f"emulated arm64 builder / native amd64 builder: {emulated / arm64:.1f}x")
            same = "identical" if emulated_sha == arm64_sha else "DIFFERENT"
            print(f"rescue-arm64 ISO sha256: native builder {arm64_sha}, emulated arm64 builder {emulated_sha}: {same}")
        env = {**os.environ, "BOOTKILN_CACHE": f"{scratch}/rescue-arm64/cache",
               "BOOTKILN_OUT": f"{scratch}/rescue-arm64/out"}
        _, output = run_task(["boot-test", "--profile", "rescue-arm64"], env)
        for line in output.splitlines():
            if re.match(r"^uefi-(cd|usb)\s+passed", line):
                print(f"arm64 boot (TCG) to the marker: {line.strip()}")


if __name__ == "__main__":
    main()
