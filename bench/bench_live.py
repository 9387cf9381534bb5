"""The live diskless ISO against Debian's live-build, same machine, same run, comparable package set.

    sudo .venv/bin/python bench/bench_live.py      (needs root and the live-build package)

bootkiln: `invoke build-iso --profile diskless-live` from an empty stage cache (the builder image is
reused, as a second build on any machine would). live-build: `lb config` + `lb build` of a hybrid
bookworm ISO with the same packages (systemd, udev, nfs-common, rsyslog, procps, iproute2) and the
distribution kernel, no installer, no memtest. Prints both times and sizes and the ratios; the
target is at most half of live-build's time at no larger size.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["systemd-sysv", "udev", "nfs-common", "rsyslog", "procps", "iproute2"]


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.monotonic()
    process = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{process.stdout[-3000:]}{process.stderr[-3000:]}")
    return time.monotonic() - started


def bootkiln_live(scratch: Path) -> tuple[float, int]:
    env = {**os.environ, "BOOTKILN_CACHE": str(scratch / "cache"), "BOOTKILN_OUT": str(scratch / "out")}
    seconds = timed([sys.executable, "-m", "invoke", "build-iso", "--profile", "diskless-live"], ROOT, env)
    return seconds, (scratch / "out" / "diskless-live" / "boot.iso").stat().st_size


def live_build(scratch: Path) -> tuple[float, int]:
    work = scratch / "live-build"
    work.mkdir()
    (work / "config" / "package-lists").mkdir(parents=True)
    env = {**os.environ, "LC_ALL": "C"}
    configure = ["lb", "config", "--distribution", "bookworm", "--archive-areas", "main",
                 "--binary-images", "iso-hybrid", "--debian-installer", "none", "--memtest", "none",
                 "--apt-recommends", "false", "--mirror-bootstrap", "http://deb.debian.org/debian",
                 "--mirror-chroot", "http://deb.debian.org/debian", "--mirror-binary", "http://deb.debian.org/debian",
                 "--security", "false", "--updates", "false", "--firmware-chroot", "false",
                 "--firmware-binary", "false"]
    seconds = timed(configure, work, env)
    (work / "config" / "package-lists" / "bench.list.chroot").write_text("\n".join(PACKAGES) + "\n")
    seconds += timed(["lb", "build"], work, env)
    iso = next(work.glob("*.iso"))
    return seconds, iso.stat().st_size


def main() -> None:
    if os.geteuid() != 0 or not shutil.which("lb"):
        raise SystemExit("run as root with live-build installed (apt-get install live-build)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="bootkiln-bench-live-") as scratch:
        ours, our_size = bootkiln_live(Path(scratch))
        print(f"bootkiln live ISO: {ours:6.1f} s, {our_size / 1048576:6.1f} MiB")
        theirs, their_size = live_build(Path(scratch))
        print(f"live-build ISO:    {theirs:6.1f} s, {their_size / 1048576:6.1f} MiB")
    print(f"time: bootkiln takes {ours / theirs:.2f} of live-build's time (target at most 0.50)")
    print(f"size: bootkiln's ISO is {our_size / their_size:.2f} of live-build's (target at most 1.00)")


if __name__ == "__main__":
    main()
