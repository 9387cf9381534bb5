"""EBS direct-API upload of a sparse 1 GiB image holding about 100 MiB of data, to a moto server on loopback.

It shows three things in one run: only the non-zero blocks are sent (and the snapshot holds exactly
those), the speed-up of N workers over 1, and that memory stays bounded (the image is streamed:
peak RSS grows by a few MiB, not by the 100 MiB of data or the 1 GiB image).

    .venv/bin/python bench/bench_ebs_upload.py [--workers 8] [--size-mib 1024] [--data-mib 100] [--latency-ms 0]

--latency-ms adds a pause to every PutSnapshotBlock before it is sent, standing in for the round
trip to a real EBS endpoint (loopback has almost none, so there parallelism only overlaps moto's
own work).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from importlib.metadata import version
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]

from bootkiln.profile.aws import AwsSettings
from bootkiln.publish.aws.ebs_upload import BLOCK_SIZE, SnapshotRequest, SnapshotUploader, UploadResult
from bootkiln.publish.aws.retry import RetryPolicy
from bootkiln.publish.aws.session import AwsContext, connect

MIB = 1 << 20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def rss_mib() -> float:
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / MIB


class RssSampler:
    """The highest current RSS seen while uploading: ru_maxrss alone can hide growth below an earlier peak."""

    def __init__(self) -> None:
        self.highest = rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.highest = max(self.highest, rss_mib())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def make_image(path: Path, size_mib: int, data_mib: int, seed: int = 7) -> set[int]:
    """A sparse image with `data_mib` 1 MiB extents of random data spread over it; returns their block indexes."""
    rng = random.Random(seed)  # noqa: S311 - where the extents go, not a secret
    stride = size_mib // data_mib
    blocks: set[int] = set()
    with path.open("wb") as handle:
        handle.truncate(size_mib * MIB)
        for extent in range(data_mib):
            # Somewhere in each stride, 512 KiB aligned, so every extent fills exactly two blocks.
            offset = extent * stride * MIB + rng.randrange(0, (stride - 1) * 2) * BLOCK_SIZE
            handle.seek(offset)
            handle.write(os.urandom(MIB))  # 1 MiB at a time: the writer does not hold the data either
            blocks.update({offset // BLOCK_SIZE, offset // BLOCK_SIZE + 1})
    return blocks


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):  # noqa: S310 - loopback
                return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("moto server did not start")


def reset(url: str) -> None:
    with urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST")):  # noqa: S310
        pass


def context(latency: float) -> AwsContext:
    """One session for every run: botocore loads its service models once, before memory is measured."""
    session = boto3.Session()
    if latency:
        def delay(**_: Any) -> None:
            time.sleep(latency)
        session.events.register("before-send.ebs.PutSnapshotBlock", delay)
    return connect(AwsSettings(), session=session)


def upload(ctx: AwsContext, image: Path, workers: int) -> tuple[UploadResult, set[int]]:
    ebs = ctx.client("ebs", attempts=1, pool=workers + 4)
    uploader = SnapshotUploader(ebs, ctx.client("ec2"), workers=workers, policy=RetryPolicy(), wait_delay=0.1)
    result = uploader.upload(image, SnapshotRequest(description="bench"))
    listed = ebs.list_snapshot_blocks(SnapshotId=result.snapshot_id)["Blocks"]
    return result, {block["BlockIndex"] for block in listed}


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return (f"machine: {platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, {platform.system()} "
            f"{platform.release()}; Python {platform.python_version()}, boto3 {version('boto3')}, "
            f"moto {version('moto')}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--data-mib", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    # moto accepts any credentials; these only keep boto3 from looking for real ones.
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"})
    print(machine())
    process, url = start_moto()
    os.environ["AWS_ENDPOINT_URL"] = url
    try:
        with tempfile.TemporaryDirectory(prefix="bootkiln-bench-") as scratch:
            image = Path(scratch) / "disk.img"
            expected = make_image(image, args.size_mib, args.data_mib)
            allocated = image.stat().st_blocks * 512 / MIB
            print(f"image: {args.size_mib} MiB sparse file, {allocated:.0f} MiB allocated, {args.data_mib} extents of "
                  f"1 MiB random data; {args.size_mib * MIB // BLOCK_SIZE} blocks of 512 KiB, {len(expected)} hold "
                  f"data; simulated latency per PutSnapshotBlock: {args.latency_ms:g} ms")
            ctx = context(args.latency_ms / 1000)
            reset(url)
            # Warm-up with a one-block image: moto loads its backends, botocore its models and clients, and
            # the peak RSS measured next holds no image data yet.
            tiny = Path(scratch) / "tiny.img"
            tiny.write_bytes(os.urandom(BLOCK_SIZE))
            for workers in (1, args.workers):
                upload(ctx, tiny, workers)
            baseline = peak_rss_mib()
            current = rss_mib()
            print(f"before the measured uploads: peak RSS (ru_maxrss) {baseline:.1f} MiB, "
                  f"current RSS {current:.1f} MiB\n")
            print(f"{'workers':>7} {'blocks':>7} {'sent':>6} {'skipped':>8} {'read':>6} {'MiB sent':>9} "
                  f"{'seconds':>8} {'MiB/s':>7} {'retries':>8} {'RSS max':>8}  snapshot == non-zero blocks")
            seconds: dict[int, float] = {}
            highest = current
            for workers in (1, args.workers):
                reset(url)
                with RssSampler() as sampler:
                    result, written = upload(ctx, image, workers)
                highest = max(highest, sampler.highest)
                stats = result.stats
                seconds[workers] = stats.seconds
                print(f"{workers:>7} {stats.blocks_total:>7} {stats.blocks_sent:>6} {stats.blocks_skipped:>8} "
                      f"{stats.blocks_read:>6} {stats.bytes_sent / MIB:>9.1f} {stats.seconds:>8.2f} "
                      f"{stats.bytes_sent / MIB / stats.seconds:>7.1f} {stats.retries:>8} {sampler.highest:>8.1f}  "
                      f"{'yes' if written == expected else 'NO'}")
            after = peak_rss_mib()
            print(f"\nspeed-up, {args.workers} workers over 1: {seconds[1] / seconds[args.workers]:.2f}x")
            print(f"peak RSS (ru_maxrss) after: {after:.1f} MiB ({after - baseline:+.1f} MiB); highest current RSS "
                  f"while uploading: {highest:.1f} MiB ({highest - current:+.1f} MiB over the start)")
            print(f"memory bound: 2 x {args.workers} blocks read ahead = {2 * args.workers * BLOCK_SIZE / MIB:.0f} MiB "
                  f"(+ the HTTP layer's copy of each block in flight); data {args.data_mib} MiB, "
                  f"image {args.size_mib} MiB")
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
