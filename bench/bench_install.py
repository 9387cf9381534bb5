"""Installer benchmark: power-on to the installed system's marker under QEMU, offline and online.

    .venv/bin/python bench/bench_install.py [--online]

Builds the installer profile (ISO with its payload, and without it for --online) in the normal
cache, makes user-data with `invoke userdata`, serves it with the fake IMDS, boots the ISO with a
blank 4 GiB virtio disk and times, from QEMU's start: the installer's own `BOOTKILN-INSTALL-DONE`
(before its reboot) and the installed system's `BOOTKILN-INSTALLED`.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.installtest import install_argv, run_install

from bootkiln.console import Reporter
from bootkiln.core.runner import Runner
from bootkiln.installer.fakeimds import FakeImds
from bootkiln.pipeline import Build
from bootkiln.profile.loader import load_profile
from bootkiln.verify.qemu import choose_accel

ROOT = Path(__file__).resolve().parents[1]


def installer_iso(scratch: Path, *, payload: bool) -> tuple[Path, Path]:
    """The installer ISO (with or without its payload) and its kernel."""
    profile = ROOT / "profiles" / "installer.toml"
    if not payload:
        variant = scratch / "installer-online.toml"
        variant.write_text(profile.read_text().replace("[installer]\n", "[installer]\npayload = false\n", 1))
        profile = variant
    build = Build(load_profile(str(profile)), reporter=Reporter(quiet_output=True))
    return build.iso().artifact("boot.iso"), build.stage("kernel").artifact("vmlinuz")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--online", action="store_true", help="also time an online install (debootstrap)")
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores ({cpu}), python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="bootkiln-bench-") as folder:
        scratch = Path(folder)
        userdata = scratch / "user-data.gz"
        subprocess.run([sys.executable, "-m", "invoke", "userdata", "--profile", "installer", "--hostname",
                        "bench.example.com", "--output", str(userdata)], cwd=ROOT, check=True, capture_output=True,
                       env={**os.environ, "BOOTKILN_OUT": str(scratch / "out"), "BOOTKILN_PKI": str(scratch / "pki")})
        modes = [("offline", True)] + ([("online", False)] if args.online else [])
        for mode, payload in modes:
            iso, kernel = installer_iso(scratch, payload=payload)
            target = scratch / f"target-{mode}.img"
            with target.open("wb") as handle:
                handle.truncate(4 << 30)
            reporter = Reporter(quiet_output=True)
            runner = Runner(reporter)
            accel = choose_accel(runner, kernel)
            with FakeImds(userdata) as imds:
                argv = install_argv("iso", iso, target, imds_port=imds.port, accel=accel, memory=1536)
                run = run_install(runner, reporter, argv, timeout=3600)
            if run.outcome != "installed":
                raise SystemExit(f"{mode} install {run.outcome}:\n" + "\n".join(run.errors + run.tail[-40:]))
            assert run.done_at is not None and run.installed_at is not None
            print(f"{mode:7} install ({accel}, ISO {iso.stat().st_size / 1048576:.1f} MiB): installer done "
                  f"{run.done_at:6.1f} s, installed system's marker {run.installed_at:6.1f} s after power-on "
                  f"(installer's own count: {run.done_fields.get('seconds', '?')} s)")


if __name__ == "__main__":
    main()
