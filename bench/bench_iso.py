"""build-iso benchmarks: cold build, warm no-op, initramfs-overlay change, and time to the boot marker.

    .venv/bin/python bench/bench_iso.py [--skip-boot]

Cold: an empty stage cache (the builder image is reused if present). Warm: the same command with
nothing changed. Overlay change: one file of a profile's extra initramfs overlay edited, which must
rebuild only the initramfs and iso stages. Boot: each mode of `invoke boot-test`, timed to the marker.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import tempfile
from pathlib import Path

from benchlib import run_task


def rebuilt_stages(output: str) -> list[str]:
    return re.findall(r"✔ (\w+) built in", output)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-boot", action="store_true")
    args = parser.parse_args()
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 30
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {memory_gib} GiB, "
          f"python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="bootkiln-bench-") as scratch:
        base = Path(scratch)
        overlay = base / "extra" / "etc"
        overlay.mkdir(parents=True)
        (overlay / "motd").write_text("version 1\n")
        profile = base / "bench.toml"
        profile.write_text('[initramfs]\noverlays = ["initramfs-base", "extra"]\n')
        env = {**os.environ, "BOOTKILN_CACHE": str(base / "cache"), "BOOTKILN_OUT": str(base / "out")}
        task = ["build-iso", "--profile", str(profile)]

        cold, output = run_task(task, env)
        print(f"cold build-iso:        {cold:7.1f} s  (stages built: {', '.join(rebuilt_stages(output))})")
        warm, output = run_task(task, env)
        assert not rebuilt_stages(output), "the warm build rebuilt something"
        print(f"warm no-op build-iso:  {warm:7.2f} s")
        (overlay / "motd").write_text("version 2\n")
        changed, output = run_task(task, env)
        stages = rebuilt_stages(output)
        assert stages == ["initramfs", "iso"], stages
        print(f"overlay-change build:  {changed:7.2f} s  (stages built: {', '.join(stages)})")
        print(f"ratios: cold/warm {cold / warm:.0f}x, cold/overlay-change {cold / changed:.0f}x")
        size = (base / "out" / "bench" / "boot.iso").stat().st_size
        print(f"ISO size: {size:,} bytes ({size / 1048576:.2f} MiB)")

        if not args.skip_boot:
            _, output = run_task(["boot-test", "--profile", str(profile)], env)
            for line in output.splitlines():
                if re.match(r"^(bios|uefi)-(cd|usb)\s+passed", line) or line.startswith("booting "):
                    print(f"boot: {line.strip()}")


if __name__ == "__main__":
    main()
