"""Scale-out benchmark: parallel vs serial stages, a fresh machine on a warm S3 cache, a matrix on 1 vs 2 workers.

    .venv/bin/python bench/bench_scale.py [--part parallel|fresh|matrix|all] [--profile rescue]

Every figure is measured in this run, from empty local caches; ratios compare runs of this run only.
- parallel: a cold `invoke build-iso` with BOOTKILN_JOBS=1 (stages one after another, as before Dask)
  and with the default (independent stages at once).
- fresh: a cold build-iso that uploads to an S3 bucket (a moto server on loopback), then the same
  build on a "fresh machine" (empty local cache) that takes every stage from the bucket.
- matrix: `invoke build-matrix` of four profiles (ISO) on a loopback Dask cluster of one worker, then
  of two workers (one thread each), each from an empty bucket prefix and empty worker caches.
The Docker builder image is reused (it is not a stage); the Debian archive is fetched over the network.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from benchlib import ROOT, run_task

MATRIX = ("default", "rescue", "tools", "diskless")



def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min)"


@contextmanager
def background(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def moto(scratch: Path) -> Iterator[dict[str, str]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with background([sys.executable, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"], scratch / "moto.log"):
        for _ in range(150):
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)  # noqa: S310 - loopback
                break
            except OSError:
                time.sleep(0.2)
        env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_DEFAULT_REGION": "us-east-1"}
        import boto3  # type: ignore[import-untyped]

        boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="bench",
                     aws_secret_access_key="bench").create_bucket(Bucket="bench")  # noqa: S106 - moto's dummy
        yield env


def part_parallel(scratch: Path, profile: str) -> None:
    times = {}
    for label, jobs in (("serial", "1"), ("parallel", "")):
        env = {**os.environ, "BOOTKILN_CACHE": f"{scratch}/{label}/cache", "BOOTKILN_OUT": f"{scratch}/{label}/out",
               "BOOTKILN_JOBS": jobs}
        print(f"  cold build-iso -p {profile}, {label} ({load()} before)")
        times[label], output = run_task(["build-iso", "-p", profile], env)
        digest = re.search(r"sha256 ([0-9a-f]{64})", output)
        timings = re.search(r"timings: (.*)", output)
        print(f"    {times[label]:6.1f} s  sha256 {digest.group(1)[:16] if digest else '?'}...  "
              f"({timings.group(1) if timings else ''})")
    print(f"parallel vs serial cold build-iso: {times['serial']:.1f} s / {times['parallel']:.1f} s = "
          f"{times['serial'] / times['parallel']:.2f}x")


def part_fresh(scratch: Path, profile: str) -> None:
    with moto(scratch) as aws:
        base = {**os.environ, **aws, "BOOTKILN_CACHE_REMOTE": "s3://bench/fresh"}
        env = {**base, "BOOTKILN_CACHE": f"{scratch}/first/cache", "BOOTKILN_OUT": f"{scratch}/first/out"}
        print(f"  cold build-iso -p {profile}, uploading to the bucket ({load()} before)")
        cold, _ = run_task(["build-iso", "-p", profile], env)
        env = {**base, "BOOTKILN_CACHE": f"{scratch}/fresh/cache", "BOOTKILN_OUT": f"{scratch}/fresh/out"}
        fresh, output = run_task(["build-iso", "-p", profile], env)
        fetched = output.count("from the remote cache")
        same = (Path(scratch, "first/out", profile, "SHA256SUMS").read_text()
                == Path(scratch, "fresh/out", profile, "SHA256SUMS").read_text())
        print(f"fresh machine (empty local cache, warm S3) vs cold: {cold:.1f} s / {fresh:.1f} s = "
              f"{cold / fresh:.1f}x; {fetched} stages from the bucket; same SHA256SUMS: {same}")


def part_matrix(scratch: Path) -> None:
    with moto(scratch) as aws:
        times = {}
        for workers in (1, 2):
            run = scratch / f"matrix-{workers}"
            run.mkdir()
            address = f"tcp://127.0.0.1:{free_port()}"
            env = {**os.environ, **aws}
            dask = str(Path(sys.executable).parent / "dask")
            with ExitStack() as stack:
                stack.enter_context(background(
                    [dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                     "--dashboard-address", f"127.0.0.1:{free_port()}"], run / "scheduler.log", env))
                for n in range(workers):
                    stack.enter_context(background(
                        [dask, "worker", address, "--nthreads", "1", "--no-nanny", "--name", f"w{n}"],
                        run / f"w{n}.log", {**env, "BOOTKILN_CACHE": f"{run}/w{n}/cache"}))
                time.sleep(3)
                args = ["build-matrix", *[a for p in MATRIX for a in ("-p", p)], "--scheduler", address]
                client = {**env, "BOOTKILN_CACHE_REMOTE": f"s3://bench/matrix-{workers}",
                          "BOOTKILN_CACHE": f"{run}/client/cache", "BOOTKILN_OUT": f"{run}/client/out"}
                print(f"  matrix of {len(MATRIX)} profiles on {workers} worker(s) ({load()} before)")
                times[workers], output = run_task(args, client)
                table = output[output.index("build matrix:"):]
                print("    " + table.strip().replace("\n", "\n    "))
        print(f"matrix of {len(MATRIX)} profiles, 2 workers vs 1: {times[1]:.1f} s / {times[2]:.1f} s = "
              f"{times[1] / times[2]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("parallel", "fresh", "matrix", "all"), default="all")
    parser.add_argument("--profile", default="rescue")
    options = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; {load()}")
    with tempfile.TemporaryDirectory(prefix="bootkiln-bench-") as folder:
        scratch = Path(folder)
        if options.part in ("parallel", "all"):
            part_parallel(scratch, options.profile)
        if options.part in ("fresh", "all"):
            part_fresh(scratch, options.profile)
        if options.part in ("matrix", "all"):
            part_matrix(scratch)


if __name__ == "__main__":
    main()
