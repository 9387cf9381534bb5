"""Builds on a real Dask cluster on loopback: a scheduler and two worker processes, each with its own
local stage cache, sharing results through the S3 tier (moto), building against the Docker engine.

Workers run without a nanny, so killing one kills the process that runs the stage, as a lost host would.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest

from bootkiln.core.engine import Engine
from bootkiln.core.lease import HOLDER_LABEL
from bootkiln.errors import EnvironmentProblem
from bootkiln.scale.cluster import connect, routing
from tests.aws.conftest import MotoServer
from tests.conftest import component_missing
from tests.fixtures import ROOT, engine, invoke

__all__ = ["engine"]
BUCKET = "cluster-stages"
HOST = socket.gethostname()


@dataclass
class Cluster:
    address: str
    workers: dict[str, subprocess.Popen[bytes]]
    caches: dict[str, Path]
    logs: Path

    def log(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.logs.iterdir()))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _dask() -> str:
    found = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")
    if found is None:
        component_missing("Dask", "the `dask` command (distributed) is not installed; pip install -e '.[test]'")
    return found


def _start(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(argv, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **env})


@pytest.fixture
def cluster(aws_env: MotoServer, engine: Engine, tmp_path: Path) -> Iterator[Cluster]:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    logs = tmp_path / "logs"
    logs.mkdir()
    address = f"tcp://127.0.0.1:{_free_port()}"
    processes = [_start([_dask(), "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                         "--dashboard-address", f"127.0.0.1:{_free_port()}"], logs / "scheduler.log", {})]
    workers: dict[str, subprocess.Popen[bytes]] = {}
    caches: dict[str, Path] = {}
    try:
        for name in ("w1", "w2"):
            caches[name] = tmp_path / name / "cache"
            workers[name] = _start([_dask(), "worker", address, "--name", name, "--nthreads", "2", "--no-nanny",
                                    "--resources", "arch-amd64=2", "--local-directory", str(tmp_path / name)],
                                   logs / f"{name}.log", {"BOOTKILN_CACHE": str(caches[name]),
                                                          "BOOTKILN_OUT": str(tmp_path / name / "out")})
            processes.append(workers[name])
        deadline = time.monotonic() + 60
        while True:
            try:
                client = connect(address)
                try:
                    if len(client.scheduler_info()["workers"]) == 2:
                        break
                finally:
                    client.close()
            except EnvironmentProblem:
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                component_missing("Dask cluster", "the scheduler and two workers did not come up:\n" +
                                  Cluster(address, workers, caches, logs).log())
            time.sleep(0.5)
        yield Cluster(address, workers, caches, logs)
    finally:
        # Workers first, while the scheduler still answers their goodbye (else Dask's close waits for it).
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def remote_env(tmp_path: Path, name: str) -> dict[str, str]:
    return {"BOOTKILN_CACHE_REMOTE": f"s3://{BUCKET}/c", "BOOTKILN_CACHE": str(tmp_path / name / "cache"),
            "BOOTKILN_OUT": str(tmp_path / name / "out")}


def running_on(engine: Engine, worker: subprocess.Popen[bytes]) -> bool:
    holder = f"{HOST}:{worker.pid}"
    return bool(engine.client.containers.list(filters={"label": f"{HOLDER_LABEL}={holder}", "status": "running"}))


@pytest.mark.docker
def test_a_worker_killed_mid_stage_loses_nothing_the_stage_runs_again_elsewhere_with_the_same_bits(
        cluster: Cluster, engine: Engine, tmp_path: Path) -> None:
    reference = invoke(["build", "--stage", "kernel", "--jobs", "1"],
                       env={"BOOTKILN_CACHE": str(tmp_path / "ref" / "cache"),
                            "BOOTKILN_OUT": str(tmp_path / "ref" / "out")}, timeout=600)
    assert reference.returncode == 0, reference.output
    log = tmp_path / "client.log"
    client = _start([sys.executable, "-m", "invoke", "build", "--stage", "kernel", "--scheduler", cluster.address],
                    log, remote_env(tmp_path, "client"))
    victim = None
    deadline = time.monotonic() + 300
    while victim is None and time.monotonic() < deadline and client.poll() is None:
        victim = next((name for name, worker in cluster.workers.items() if running_on(engine, worker)), None)
        time.sleep(0.2)
    assert victim is not None, f"no worker ran the kernel stage's container:\n{log.read_text()}\n{cluster.log()}"
    cluster.workers[victim].send_signal(signal.SIGKILL)
    assert client.wait(timeout=600) == 0, f"{log.read_text()}\n{cluster.log()}"
    output = log.read_text()
    survivor = next(name for name in cluster.workers if name != victim)
    assert "kernel built in" in output, output
    sums = (tmp_path / "client" / "out" / "default" / "SHA256SUMS").read_text()
    assert sums == (tmp_path / "ref" / "out" / "default" / "SHA256SUMS").read_text()
    assert list((cluster.caches[survivor] / "stages" / "kernel").iterdir()), "the survivor did not build it"
    assert not (cluster.caches[victim] / "stages" / "kernel").exists(), "the killed worker committed an entry"


@pytest.mark.docker
def test_stages_are_routed_by_architecture(cluster: Cluster) -> None:
    client: Any = connect(cluster.address)
    try:
        assert routing(client, ["amd64"]) == {"amd64": {"arch-amd64": 1}}
        with pytest.raises(EnvironmentProblem, match="no worker of the Dask cluster runs arm64 natively"):
            routing(client, ["arm64"])
    finally:
        client.close()


def test_an_unreachable_scheduler_is_named_before_any_work(aws_env: MotoServer, tmp_path: Path) -> None:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    address = f"tcp://127.0.0.1:{_free_port()}"
    result = invoke(["build-iso", "--scheduler", address], env=remote_env(tmp_path, "client"), timeout=120)
    assert result.returncode == 3, result.output
    assert f"no Dask scheduler answered at {address}" in result.output
    assert "▶" not in result.output and "Traceback" not in result.output, result.output


@pytest.mark.docker
def test_a_matrix_on_the_cluster_names_its_dashboard_and_runs_a_shared_stage_once(
        cluster: Cluster, tmp_path: Path) -> None:
    result = invoke(["build-matrix", "-p", "default", "-p", "rescue", "--target", "bootloader", "--scheduler",
                     cluster.address], env=remote_env(tmp_path, "client"), timeout=600)
    assert result.returncode == 0, f"{result.output}\n{cluster.log()}"
    assert re.search(r"dashboard http://127\.0\.0\.1:\d+/status", result.output), result.output
    assert len(re.findall(r": bootloader (built|from cache) in .* on tcp://127\.0\.0\.1", result.output)) == 1
    assert "build matrix: 2 builds in" in result.output
    for name in ("default", "rescue"):
        assert (tmp_path / "client" / "out" / name / "efiboot.img").exists()


@pytest.mark.docker
def test_invoke_worker_advertises_the_engines_architecture(cluster: Cluster, engine: Engine, tmp_path: Path) -> None:
    expected = {"x86_64": "arch-amd64", "aarch64": "arch-arm64"}.get(engine.client.info()["Architecture"], "?")
    log = tmp_path / "w3.log"
    process = _start([sys.executable, "-m", "invoke", "worker", "--scheduler", cluster.address, "--name", "w3",
                      "--threads", "3"], log, {"BOOTKILN_CACHE": str(tmp_path / "w3" / "cache")})
    try:
        client: Any = connect(cluster.address)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                found = [w for w in client.scheduler_info()["workers"].values() if w.get("name") == "w3"]
                if found:
                    assert found[0]["resources"] == {expected: 3}, found
                    assert found[0]["nthreads"] == 3
                    return
                assert process.poll() is None, log.read_text()
                time.sleep(0.5)
            raise AssertionError(f"invoke worker never joined the cluster:\n{log.read_text()}")
        finally:
            client.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
