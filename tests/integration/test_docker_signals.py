"""A build stopped by a signal leaves nothing on the engine; reaping takes only builds whose lease lapsed.

The signal cases start `invoke build --stage busybox` with their own cache and output folders, wait
until its first builder container runs, and signal it: the busybox stage's first step starts a
container within seconds, so each case costs seconds, not a build.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker.errors
import pytest

from bootkiln.core.cache import StageCache
from bootkiln.core.engine import OWNER_LABEL, Engine
from bootkiln.core.lease import (
    HOLDER_LABEL,
    LABEL,
    LEASE_LABEL,
    PROCESS_LABEL,
    TTL_LABEL,
    Lease,
    process_identity,
    read_lease_book,
)
from tests.fixtures import ROOT, SessionBuild, invoke

HOST = socket.gethostname()


def default_signals() -> None:
    # pytest may run with SIGINT or SIGHUP ignored (in the background, under nohup); the child must not inherit that.
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def start_busybox_build(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen([sys.executable, "-m", "invoke", "build", "--stage", "busybox"], cwd=ROOT,
                                env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT,
                                preexec_fn=default_signals)


def owned_by(engine: Engine, holder: str) -> list[str]:
    """Every container and volume (lease records included) the build `holder` made, by kind and name."""
    mine = {"label": f"{HOLDER_LABEL}={holder}"}
    return ([f"container {c.name}" for c in engine.client.containers.list(all=True, filters=mine)]
            + [f"volume {v.name}" for v in engine.client.volumes.list(filters=mine)])


def wait_for_running_container(engine: Engine, process: subprocess.Popen[bytes], log: Path) -> str:
    """Wait until the build runs a builder container; its holder label (host:pid)."""
    holder = f"{HOST}:{process.pid}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the build ended ({process.returncode}) before it ran a container:\n"
                                 f"{log.read_text(errors='replace')}")
        running = engine.client.containers.list(filters={"label": f"{HOLDER_LABEL}={holder}", "status": "running"})
        if running:
            return holder
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"no builder container of {holder} ran within 300 s:\n{log.read_text(errors='replace')}")


def children(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.exists() else []


def assert_no_partial_cache_entry(cache: Path) -> None:
    assert children(cache / "tmp") == [], "a scratch folder stayed"
    entries = children(cache / "stages" / "busybox")
    assert entries == [], "a busybox cache entry appeared"
    assert all(StageCache(cache).lookup("busybox", entry.name) is None for entry in entries)


@pytest.mark.docker
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                                (signal.SIGINT, 130)])
def test_signalled_build_removes_its_container_volume_and_scratch(
    engine: Engine, isolated: dict[str, str], tmp_path: Path, signum: int, status: int
) -> None:
    log = tmp_path / "build.log"
    process = start_busybox_build(isolated, log)
    holder = wait_for_running_container(engine, process, log)
    assert any(item.startswith("volume bootkiln-busybox-") for item in owned_by(engine, holder))
    started = time.monotonic()
    process.send_signal(signum)
    assert process.wait(timeout=60) == status, log.read_text(errors="replace")
    output = log.read_text(errors="replace")
    assert f"busybox interrupted by {signal.Signals(signum).name} after" in output, output
    assert "no partial result was kept" in output
    assert "failed" not in output and "Traceback" not in output, output
    assert time.monotonic() - started < 30, "cleaning up must not wait for the container's work"
    assert owned_by(engine, holder) == [], "the build's containers, volumes or lease outlived it"
    assert_no_partial_cache_entry(Path(isolated["BOOTKILN_CACHE"]))


@pytest.mark.docker
def test_after_sigkill_the_next_run_names_what_it_reaped(
    engine: Engine, isolated: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "build.log"
    process = start_busybox_build(isolated, log)
    holder = wait_for_running_container(engine, process, log)
    left = [item for item in owned_by(engine, holder) if "bootkiln-lease-" not in item]
    assert any(item.startswith("container ") for item in left) and any(item.startswith("volume ") for item in left)
    process.kill()
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert set(left) <= set(owned_by(engine, holder)), "SIGKILL runs no cleanup: everything is still there"

    # Its lease has not lapsed yet, but its process is gone from our PID namespace: reaped at once.
    result = invoke(["builder"], env=isolated, timeout=600)
    assert result.returncode == 0, result.output
    assert "removed what killed bootkiln builds left on the Docker engine" in result.output
    reported = result.output[result.output.index("removed what killed"):]
    for item in left:
        assert item in reported, f"{item} not named in:\n{result.output}"
    assert f"of the build {holder} (its process is gone)" in reported
    assert owned_by(engine, holder) == [], "the dead build's objects or lease record are still there"


# --- leases on the engine -------------------------------------------------------------------------

@pytest.fixture
def foreign_objects(engine: Engine) -> Iterator[list[str]]:
    """Lease ids whose objects the test makes; all removed afterwards, whatever the test did."""
    leases: list[str] = []
    yield leases
    for lease in leases:
        mine = {"label": f"{LEASE_LABEL}={lease}"}
        for container in engine.client.containers.list(all=True, filters=mine):
            container.remove(force=True)
        for volume in engine.client.volumes.list(filters=mine):
            volume.remove(force=True)


def make_foreign_build(engine: Engine, image: str, leases: list[str], *, holder: str, ttl: float,
                       extra: dict[str, str] | None = None) -> tuple[str, str]:
    """What another build (another host, another PID namespace) would have on the engine: a lease
    record, a container and a volume. Returns the container's and the volume's names."""
    lease = uuid.uuid4().hex
    leases.append(lease)
    labels = {LABEL: "1", LEASE_LABEL: lease, HOLDER_LABEL: holder, **(extra or {})}
    engine.client.volumes.create(name=f"bootkiln-lease-{lease[:16]}-1", labels={**labels, TTL_LABEL: f"{ttl:g}"})
    volume = f"bootkiln-test-volume-{lease[:12]}"
    engine.client.volumes.create(name=volume, labels=labels)
    container = engine.client.containers.create(image, ["true"], entrypoint=[], name=f"bootkiln-test-{lease[:12]}",
                                                network_mode="none", labels=labels)
    return str(container.name), volume


def exists(engine: Engine, kind: str, name: str) -> bool:
    try:
        (engine.client.containers if kind == "container" else engine.client.volumes).get(name)
    except docker.errors.NotFound:
        return False
    return True


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.docker
def test_live_leases_are_kept_from_any_host_and_lapsed_ones_reaped_and_named(
    engine: Engine, session_build: SessionBuild, foreign_objects: list[str]
) -> None:
    image = session_build.build.builder.tag
    elsewhere = make_foreign_build(engine, image, foreign_objects, holder="elsewhere.example:1", ttl=3600)
    # A build in another PID namespace on a host of our name: its PID is dead here, which says nothing.
    pid = dead_pid()
    identity = process_identity(pid)
    assert identity is not None
    boot, namespace, _ = identity.rsplit("/", 2)
    namespaced_holder = f"{HOST}:{pid}"
    namespaced = make_foreign_build(engine, image, foreign_objects, holder=namespaced_holder, ttl=3600,
                                    extra={OWNER_LABEL: namespaced_holder,
                                           PROCESS_LABEL: f"{boot}/0:{namespace}/{pid}"})
    lapsed = make_foreign_build(engine, image, foreign_objects, holder="gone.example:2", ttl=1)
    time.sleep(1 + 1 + 1.5)  # the lapsed lease's time to live, one-second stamps, and a margin

    reaped = engine.reap_orphans()
    names = {item.name for item in reaped}
    for container, volume in (elsewhere, namespaced):
        assert container not in names and volume not in names
        assert exists(engine, "container", container) and exists(engine, "volume", volume)
    by_name = {item.name: item for item in reaped}
    assert {lapsed[0], lapsed[1]} <= set(by_name), reaped
    assert by_name[lapsed[0]].kind == "container" and by_name[lapsed[1]].kind == "volume"
    assert by_name[lapsed[0]].holder == "gone.example:2"
    assert by_name[lapsed[0]].why.startswith("lease not renewed for")
    assert not exists(engine, "container", lapsed[0]) and not exists(engine, "volume", lapsed[1])
    records = engine.client.volumes.list(filters={"label": f"{LEASE_LABEL}={foreign_objects[2]}"})
    assert records == [], "the lapsed lease's record stays"


@pytest.mark.docker
def test_objects_of_older_bootkiln_are_reaped_only_when_their_process_is_gone_from_this_host(
    engine: Engine
) -> None:
    suffix = uuid.uuid4().hex[:12]
    gone = f"{HOST}:{dead_pid()}"
    ours = f"bootkiln-test-old-{suffix}"
    theirs = f"bootkiln-test-other-{suffix}"
    engine.client.volumes.create(name=ours, labels={LABEL: "1", OWNER_LABEL: gone})
    engine.client.volumes.create(name=theirs, labels={LABEL: "1", OWNER_LABEL: f"elsewhere.example:{os.getpid()}"})
    try:
        reaped = {item.name: item for item in engine.reap_orphans()}
        assert ours in reaped and reaped[ours].holder == gone
        assert reaped[ours].why == "its process is gone from this host"
        assert theirs not in reaped and exists(engine, "volume", theirs)
    finally:
        for name in (ours, theirs):
            if exists(engine, "volume", name):
                engine.client.volumes.get(name).remove(force=True)


@pytest.mark.docker
def test_a_running_build_renews_its_lease_and_releases_it(engine: Engine) -> None:
    warnings: list[str] = []
    lease = Lease(client=engine.client, ttl=1.2, warn=warnings.append)
    lease.start()
    try:
        seen: set[str] = set()
        started = time.monotonic()
        while time.monotonic() - started < 4:  # over three times its time to live
            book = read_lease_book(engine.client, own=())
            assert book.why_dead(lease.id) is None, "a renewed lease looked dead"
            records = [record.name for record in book.records if record.lease == lease.id]
            assert 1 <= len(records) <= 2
            seen.update(records)
            time.sleep(0.25)
        assert len(seen) >= 4, f"the lease was not renewed: {sorted(seen)}"
        engine.client.volumes.create(name=f"bootkiln-test-{lease.id[:12]}", labels={LABEL: "1", **lease.labels()})
    finally:
        lease.release()
    assert warnings == []
    assert engine.client.volumes.list(filters={"label": f"{LEASE_LABEL}={lease.id}"}) == []
    assert read_lease_book(engine.client, own=()).why_dead(lease.id) == "its lease record is gone"
