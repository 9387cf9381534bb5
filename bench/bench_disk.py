"""build-disk benchmark: the disk stage cold, the warm no-op, allocation vs size, and boot to the marker.

    .venv/bin/python bench/bench_disk.py

The first run fills an empty cache (rootfs, kernel, busybox, initramfs, disk); the figure for the
disk stage alone comes from bootkiln's own stage timings.
"""

from __future__ import annotations

import os
import platform
import re
import tempfile
from pathlib import Path

from benchlib import run_task


def main() -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="bootkiln-bench-") as scratch:
        env = {**os.environ, "BOOTKILN_CACHE": f"{scratch}/cache", "BOOTKILN_OUT": f"{scratch}/out"}
        cold, output = run_task(["build-disk"], env)
        stage = re.search(r"✔ disk built in ([0-9.]+)s", output)
        print(f"cold build-disk (empty cache, every stage): {cold:6.1f} s; disk stage alone "
              f"{stage.group(1) if stage else '?'} s")
        warm, output = run_task(["build-disk"], env)
        assert "disk from cache" in output
        print(f"warm no-op build-disk: {warm:5.2f} s  (cold/warm {cold / warm:.0f}x)")
        image = Path(scratch) / "out" / "default" / "disk.img"
        info = image.stat()
        print(f"image: {info.st_size >> 20} MiB apparent, {info.st_blocks * 512 >> 20} MiB allocated")
        _, output = run_task(["boot-test", "--mode", "disk-bios", "--mode", "disk-uefi"], env)
        for line in output.splitlines():
            if re.match(r"^disk-(bios|uefi)\s+passed", line):
                print(f"boot: {line.strip()}")


if __name__ == "__main__":
    main()
