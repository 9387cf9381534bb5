"""Secure Boot's cost: the ISO's and EFI image's sizes with Debian's signed chain against the
unsigned grub-mkimage GRUB (`secureboot = false`), and the time to the boot marker under OVMF with
Secure Boot on (Microsoft's keys, SMM) against plain OVMF, per mode.

    .venv/bin/python bench/bench_secureboot.py [--runs N]

Uses the normal stage cache and out/ folders (BOOTKILN_CACHE / BOOTKILN_OUT if set), so a warm
cache makes the builds quick; the boots are what it measures.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchlib import machine_line
from bootkiln.console import Reporter
from bootkiln.core.runner import Runner
from bootkiln.pipeline import Build
from bootkiln.profile.loader import load_profile
from bootkiln.profile.schema import BootMode
from bootkiln.verify.boottest import MARKER
from bootkiln.verify.qemu import boot, choose_accel

PAIRS: list[tuple[BootMode, BootMode]] = [("uefi-cd", "uefi-cd-sb"), ("uefi-usb", "uefi-usb-sb"),
                                          ("disk-uefi", "disk-uefi-sb")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    print(machine_line())
    reporter = Reporter(quiet_output=True)
    signed = Build(load_profile(None), reporter=reporter)
    with tempfile.TemporaryDirectory(prefix="bootkiln-bench-sb-") as scratch:
        plain_profile = Path(scratch) / "nosb.toml"
        plain_profile.write_text("secureboot = false\n")
        unsigned = Build(load_profile(str(plain_profile)), reporter=reporter)
        for label, build in [("signed chain (default)", signed), ("secureboot = false", unsigned)]:
            iso = build.iso().artifact("boot.iso").stat().st_size
            efi = build.stage("bootloader").artifact("efiboot.img").stat().st_size
            print(f"{label:24} ISO {iso:>11,} bytes  EFI image {efi:>10,} bytes")
    runner = Runner(reporter)
    accel = choose_accel(runner, signed.stage("kernel").artifact("vmlinuz"))
    images = {"iso": signed.iso().artifact("boot.iso"), "disk": signed.disk().artifact("disk.img")}
    for plain, secure in PAIRS:
        times: dict[BootMode, list[float]] = {plain: [], secure: []}
        for _ in range(args.runs):
            for mode in (plain, secure):
                image = images["disk" if mode.startswith("disk-") else "iso"]
                result = boot(runner, reporter, mode, image, marker=MARKER, accel=accel, memory=512, timeout=300)
                if not result.passed:
                    raise SystemExit(f"{mode} did not reach the marker:\n" + "\n".join(result.tail[-15:]))
                times[mode].append(result.seconds)
        a, b = statistics.median(times[plain]), statistics.median(times[secure])
        print(f"{plain:10} {a:6.1f} s   {secure:13} {b:6.1f} s   ratio {b / a:4.2f}  ({accel}, {args.runs} run(s))")


if __name__ == "__main__":
    main()
