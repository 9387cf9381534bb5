"""Your own Secure Boot key: the signed Unified Kernel Image's size, the ISO's against the default
(shim + GRUB), and the time to the boot marker with the UKI under OVMF with only a test key enrolled
(Secure Boot on, SMM) against the same ISO under plain OVMF (Secure Boot off), per medium.

    .venv/bin/python bench/bench_uki.py [--runs N]

Makes a throwaway test key pair and profile in a temporary folder; uses the normal stage cache and
out/ folders (BOOTKILN_CACHE / BOOTKILN_OUT if set), so a warm cache makes the builds quick.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchlib import machine_line
from bootkiln.console import Reporter
from bootkiln.core.runner import Runner
from bootkiln.core.uefivars import enrolled_ovmf_vars
from bootkiln.pipeline import Build
from bootkiln.profile.loader import load_profile
from bootkiln.profile.sbkeys import generate_test_pair
from bootkiln.profile.schema import BootMode
from bootkiln.stages.artifacts import uki_signed
from bootkiln.verify.boottest import MARKER
from bootkiln.verify.qemu import boot, choose_accel

PAIRS: list[tuple[BootMode, BootMode]] = [("uefi-cd", "uefi-cd-ownkey"), ("uefi-usb", "uefi-usb-ownkey")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    print(machine_line())
    reporter = Reporter(quiet_output=True)
    runner = Runner(reporter)
    with tempfile.TemporaryDirectory(prefix="bootkiln-bench-uki-") as scratch:
        folder = Path(scratch)
        generate_test_pair(folder)
        profile = folder / "benchuki.toml"
        profile.write_text('[secureboot]\nkey = "secureboot.key"\ncert = "secureboot.crt"\n')
        own = Build(load_profile(str(profile)), reporter=reporter)
        default = Build(load_profile(None), reporter=reporter)
        uki = own.stage("ukisign").artifact(uki_signed("iso")).stat().st_size
        print(f"signed UKI {uki:,} bytes")
        for label, build in [("shim + GRUB (default)", default), ("own key: signed UKI", own)]:
            iso = build.iso().artifact("boot.iso").stat().st_size
            efi = build.stage("bootloader").artifact("efiboot.img").stat().st_size
            print(f"{label:24} ISO {iso:>11,} bytes  EFI image {efi:>10,} bytes")
        enrolled = enrolled_ovmf_vars(runner, folder / "secureboot.crt", folder / "vars.fd")
        accel = choose_accel(runner, own.stage("kernel").artifact("vmlinuz"))
        image = own.iso().artifact("boot.iso")
        for plain, secure in PAIRS:
            times: dict[BootMode, list[float]] = {plain: [], secure: []}
            for _ in range(args.runs):
                for mode in (plain, secure):
                    result = boot(runner, reporter, mode, image, marker=MARKER, accel=accel, memory=512,
                                  timeout=300, vars_template=enrolled if mode == secure else None)
                    if not result.passed:
                        raise SystemExit(f"{mode} did not reach the marker:\n" + "\n".join(result.tail[-15:]))
                    times[mode].append(result.seconds)
            a, b = statistics.median(times[plain]), statistics.median(times[secure])
            print(f"{plain:10} {a:6.1f} s   {secure:16} {b:6.1f} s   ratio {b / a:4.2f}  "
                  f"({accel}, {args.runs} run(s))")


if __name__ == "__main__":
    main()
