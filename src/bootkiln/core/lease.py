"""Leases: how a running build shows the Docker engine it is alive, so that reaping takes only the dead.

Every container and volume a build makes carries its lease id (label `bootkiln.lease`). The lease
itself is a record on the engine: an empty named volume labelled with the lease id and a time to
live. A background thread replaces the record every ttl/6 seconds, making the new one before it
removes the old, so a record always exists while the build runs. The engine stamps each record with
its own clock (the volume's CreatedAt), and a reaper compares that stamp with the engine's clock
too (SystemTime). So a lease is judged the same way from every host and every PID namespace, and
skewed clocks on the machines sharing an engine do not matter.

Why a volume: labels cannot change after creation, so the lease cannot be a label alone; something
must be made again to renew it, and a volume is the cheapest object the engine timestamps: no
image, no process, one empty folder on the engine's disk.

A lease is certainly dead when its newest record is older than its time to live (the owner stopped
renewing: killed, or cut off from the engine for six renewal periods), or when it has no record at
all (the owner removes its record only after its containers and volumes, at exit).

A reaper need not wait for the time to live when it shares the holder's PID namespace on the same
boot of the same kernel: the record names that namespace (boot id, namespace inode) and the PID, and
there a PID that no longer exists is certainly dead. Anywhere else a PID means nothing, and only the
lease counts.
"""

from __future__ import annotations

import atexit
import math
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import docker.errors
import requests.exceptions
from docker.client import DockerClient

from bootkiln import interrupts
from bootkiln.errors import InputError

LABEL = "bootkiln"
LEASE_LABEL = "bootkiln.lease"
HOLDER_LABEL = "bootkiln.holder"  # host:pid, only to say whose leftovers were reaped
TTL_LABEL = "bootkiln.lease.ttl"  # only on lease records
PROCESS_LABEL = "bootkiln.lease.process"  # only on lease records: boot id/PID namespace/pid
TTL_ENV = "BOOTKILN_LEASE_TTL"
DEFAULT_TTL = 60.0
RENEWALS_PER_TTL = 6
# The engine stamps volumes to the second, so a record may look up to a second older than it is.
CLOCK_GRACE = 1.0
# What a call to an engine that went away can raise, besides the docker SDK's own errors.
ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)

_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def engine_time(text: object) -> float | None:
    """Seconds since the epoch for the engine's RFC 3339 times (nanoseconds, Z or an offset); None if unusable."""
    match = _TIME.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    stamp = f"{whole}.{(fraction or '0')[:6]}{'+00:00' if zone == 'Z' else zone}"
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def lease_ttl(environ: Mapping[str, str] = os.environ) -> float:
    """The time to live a build gives its lease: BOOTKILN_LEASE_TTL seconds, else 60."""
    text = environ.get(TTL_ENV, "").strip()
    if not text:
        return DEFAULT_TTL
    try:
        ttl = float(text)
    except ValueError:
        ttl = math.nan
    if not math.isfinite(ttl) or ttl < 1:
        raise InputError(f"{TTL_ENV}={text!r} is not a number of seconds of at least 1",
                         hint=f"unset it for the default ({DEFAULT_TTL:.0f} s), or raise it for a slow remote engine")
    return ttl


def process_identity(pid: int | None = None) -> str | None:
    """`boot id/PID namespace/pid` for a process of ours, or None where /proc cannot tell (not Linux)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = Path("/proc/self/ns/pid").stat()
    except OSError:
        return None
    return f"{boot}/{namespace.st_dev}:{namespace.st_ino}/{os.getpid() if pid is None else pid}"


def process_gone(identity: str, here: str | None) -> bool:
    """True only if `identity` is a process of our PID namespace, on this boot, that no longer exists.

    A live namespace keeps its inode, so a holder whose identity shows our boot and namespace was in
    this namespace. A PID reused since only makes the holder look alive, which is safe.
    """
    theirs, mine = identity.rsplit("/", 2), (here or "").rsplit("/", 2)
    if here is None or len(theirs) != 3 or theirs[:2] != mine[:2] or not theirs[2].isdigit():
        return False
    pid = int(theirs[2])
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(frozen=True)
class LeaseRecord:
    name: str
    lease: str
    holder: str
    created: float | None  # engine clock; None when the engine gave no usable time
    ttl: float
    process: str = ""

    @property
    def expires(self) -> float:
        if self.created is None:
            return math.inf  # no stamp: never certainly dead
        return self.created + self.ttl + CLOCK_GRACE


def record_of(attrs: Mapping[str, Any]) -> LeaseRecord | None:
    """The lease record a volume's attributes describe, or None for any other volume."""
    labels = attrs.get("Labels") or {}
    if TTL_LABEL not in labels or not labels.get(LEASE_LABEL):
        return None
    try:
        ttl = float(labels[TTL_LABEL])
    except ValueError:
        ttl = math.inf
    if not ttl > 0:
        ttl = math.inf
    return LeaseRecord(name=str(attrs.get("Name", "")), lease=labels[LEASE_LABEL],
                       holder=labels.get(HOLDER_LABEL, "?"), created=engine_time(attrs.get("CreatedAt")), ttl=ttl,
                       process=labels.get(PROCESS_LABEL, ""))


@dataclass(frozen=True)
class LeaseBook:
    """Every lease record on the engine and the engine's clock, read at one moment."""

    now: float | None
    records: tuple[LeaseRecord, ...]
    own: frozenset[str] = frozenset()
    here: str | None = None  # process_identity() of the reaper

    def why_dead(self, lease: str) -> str | None:
        """Why the lease's holder is certainly dead, or None if it may be alive."""
        if lease in self.own:
            return None
        records = [record for record in self.records if record.lease == lease]
        if not records:
            return "its lease record is gone"
        if any(record.process and process_gone(record.process, self.here) for record in records):
            return "its process is gone"
        if self.now is None:
            return None
        newest = max(records, key=lambda record: record.expires)
        if newest.expires > self.now:
            return None
        assert newest.created is not None
        return f"lease not renewed for {self.now - newest.created:.0f}s, its limit is {newest.ttl:g}s"

    def dead_records(self) -> list[LeaseRecord]:
        return [record for record in self.records if self.why_dead(record.lease)]


def read_lease_book(client: DockerClient, own: Iterable[str]) -> LeaseBook:
    """The engine's clock first, then the records: a record made in between only looks younger."""
    now = engine_time(client.info().get("SystemTime"))
    volumes = client.volumes.list(filters={"label": TTL_LABEL})
    records = tuple(record for volume in volumes if (record := record_of(volume.attrs)) is not None)
    return LeaseBook(now, records, frozenset(own), process_identity())


@dataclass
class Lease:
    """This process's lease on one engine: made at once, renewed by a daemon thread, released at exit."""

    client: DockerClient
    ttl: float
    warn: Callable[[str], None]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    holder: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    process: str | None = field(default_factory=process_identity)
    _current: str = ""
    _sequence: int = 0
    _renewed: float = field(default_factory=time.monotonic)
    _warned: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def period(self) -> float:
        return self.ttl / RENEWALS_PER_TTL

    def labels(self) -> dict[str, str]:
        return {LEASE_LABEL: self.id, HOLDER_LABEL: self.holder}

    def start(self) -> None:
        self._current = self._make_record()
        self._thread = threading.Thread(target=self._renew_until_stopped, name=f"bootkiln-lease-{self.id[:8]}",
                                        daemon=True)
        self._thread.start()

    def _make_record(self) -> str:
        self._sequence += 1
        name = f"bootkiln-lease-{self.id[:16]}-{self._sequence}"
        labels = {LABEL: "1", **self.labels(), TTL_LABEL: f"{self.ttl:g}"}
        if self.process:
            labels[PROCESS_LABEL] = self.process
        self.client.volumes.create(name=name, labels=labels)
        return name

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self._renew()
            except ENGINE_ERRORS:
                if time.monotonic() - self._renewed > self.ttl:
                    self._warn_once(f"could not renew this build's lease on the Docker engine for "
                                    f"{self.ttl:g}s; another bootkiln run may now remove its containers and volumes")

    def _renew(self) -> None:
        previous, self._current = self._current, self._make_record()
        self._renewed = time.monotonic()
        try:
            self.client.volumes.get(previous).remove(force=True)
        except docker.errors.NotFound:
            self._warn_once(f"this build's lease record {previous} was removed by someone else (a reaper that "
                            "judged it dead, `docker volume prune` or `invoke clean --docker`); its containers "
                            "and volumes may be gone too")

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            self.warn(message)

    def sweep(self) -> list[str]:
        """Remove every container and volume of this lease (not its records); their names."""
        removed: list[str] = []
        mine = {"label": f"{LEASE_LABEL}={self.id}"}
        for container in self.client.containers.list(all=True, filters=mine):
            try:
                container.remove(force=True)
                removed.append(f"container {container.name}")
            except docker.errors.NotFound:
                pass  # removed meanwhile by its own cleanup
        for volume in self.client.volumes.list(filters=mine):
            if TTL_LABEL in (volume.attrs.get("Labels") or {}):
                continue
            try:
                volume.remove(force=True)
                removed.append(f"volume {volume.name}")
            except docker.errors.NotFound:
                pass
        return removed

    def release(self) -> None:
        """Stop renewing, remove what is left of this lease's objects, then its records."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.sweep()
        for volume in self.client.volumes.list(filters={"label": f"{LEASE_LABEL}={self.id}"}):
            with suppress(docker.errors.NotFound):
                volume.remove(force=True)


_held: dict[tuple[int, str], Lease] = {}
_held_lock = threading.Lock()


def hold_lease(client: DockerClient, endpoint: str, ttl: float, warn: Callable[[str], None]) -> Lease:
    """This process's lease on `endpoint`, made on first use; one per process, however many connections."""
    with _held_lock:
        key = (os.getpid(), endpoint)  # a forked child is another holder
        lease = _held.get(key)
        if lease is None:
            lease = Lease(client=client, ttl=ttl, warn=warn)
            lease.start()
            _held[key] = lease
            interrupts.add_cleanup(lease.sweep)
            atexit.register(_release_quietly, lease)
        return lease


def own_leases() -> set[str]:
    return {lease.id for (pid, _), lease in _held.items() if pid == os.getpid()}


def _release_quietly(lease: Lease) -> None:
    # At exit, an unreachable engine only means the record expires on its own.
    with suppress(*ENGINE_ERRORS):
        lease.release()
