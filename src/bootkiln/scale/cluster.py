"""Builds on a Dask cluster the user started: stages become tasks on its workers, results travel through S3.

The client plans the stage graph (every stage's cache key, as a local build does) and submits one
task per stage, keyed `<stage>-<cache key>`: a stage that several builds need is one task, run once
on the cluster. A worker builds the stage against the Docker engine of its own host, with its own
local stage cache; what the stage consumes comes from the shared S3 tier (cache.remote), where the
tasks it depends on left it. Dask runs a task again on another worker when the one running it is
lost, and a stage's output is the same bits wherever it is built.

Workers advertise the architectures their engine runs natively as resources (`arch-amd64=1`, see
worker_resources); once any worker does, each stage is routed to a worker of its profile's
debian.architecture.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bootkiln.console import Reporter
from bootkiln.errors import EnvironmentProblem, InputError, InternalError
from bootkiln.formats.arch import debian_arch
from bootkiln.paths import Workspace
from bootkiln.pipeline import STAGES, Build, stages_for
from bootkiln.profile.schema import Profile

SCHEDULER_VARIABLE = "BOOTKILN_SCHEDULER"
CONNECT_SECONDS = 10
ARCH_RESOURCE = "arch-"


def scheduler_address(option: str | None, profile: Profile | None,
                      environ: Mapping[str, str] = os.environ) -> str | None:
    """--scheduler, else BOOTKILN_SCHEDULER, else the profile's cluster.scheduler; None for a local build."""
    value = option or environ.get(SCHEDULER_VARIABLE, "").strip() or (profile.cluster.scheduler if profile else None)
    if value and not value.startswith(("tcp://", "tls://")):
        raise InputError(f"scheduler address {value!r} is not a Dask address like tcp://HOST:8786",
                         hint=f"pass --scheduler tcp://HOST:8786 or set {SCHEDULER_VARIABLE}")
    return value or None


def connect(address: str) -> Any:
    """A client of the scheduler at `address`; a clear error naming it if it does not answer."""
    from distributed import Client

    try:
        return Client(address, timeout=CONNECT_SECONDS, set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise EnvironmentProblem(f"no Dask scheduler answered at {address} within {CONNECT_SECONDS} s ({exc})",
                                 hint="start one there (`dask scheduler`), or fix --scheduler / "
                                      f"{SCHEDULER_VARIABLE} / cluster.scheduler") from None


def worker_resources(architecture: str) -> dict[str, float]:
    """The resources a worker whose engine runs `architecture` (Debian's name, or docker info's) advertises."""
    debian = debian_arch(architecture) or architecture
    return {f"{ARCH_RESOURCE}{debian}": 1}


@dataclass(frozen=True)
class StageDone:
    """What a worker reports of a stage: small, so it travels through the scheduler cheaply."""

    profile: str
    name: str
    key: str
    sha256: dict[str, str]
    cached: bool
    seconds: float
    worker: str


_resolved: dict[str, Build] = {}
_resolved_lock = threading.Lock()
# What a Build resolves once (engine, archive, builder image, bucket): shared by the tasks of one profile.
_SHARED = ("engine", "runner", "archive", "builder", "builder_archive", "remote")


def _worker_build(profile: Profile) -> Build:
    """A fresh Build for one task (tasks run in threads at once), with what every build of the profile
    resolves already resolved: once per profile per worker process, not once per stage."""
    with _resolved_lock:
        template = _resolved.get(profile.model_dump_json())
        if template is None:
            template = Build(profile, workspace=Workspace.default(), reporter=Reporter(), jobs=1)
            template.remote  # noqa: B018 - resolved here, under the lock, with the builder
            template.builder  # noqa: B018
            _resolved[profile.model_dump_json()] = template
    build = Build(profile, workspace=template.workspace, reporter=template.reporter, jobs=1)
    for name in _SHARED:
        if name in template.__dict__:  # functools.cached_property keeps its value in the instance's __dict__
            build.__dict__[name] = template.__dict__[name]
    return build


def run_stage(profile: Profile, name: str, key: str, *consumed: StageDone) -> StageDone:
    """A task on a worker: build (or fetch) one stage in this worker's own cache, and share it via S3.

    What it consumes was uploaded by the tasks `consumed` came from, so here it is a remote hit.
    """
    from distributed import get_worker

    started = time.monotonic()
    result = _worker_build(profile).stage(name)
    if result.key != key:
        raise InternalError(f"worker {get_worker().address} computed key {result.key[:12]} for {name}, the client "
                            f"{key[:12]}: its builder image or bootkiln checkout differs from the client's")
    return StageDone(profile.name, name, key, result.metadata["sha256"], result.cached,
                     time.monotonic() - started, get_worker().address)


def routing(client: Any, architectures: Iterable[str]) -> dict[str, dict[str, float] | None]:
    """The resources a stage of each architecture asks for; an error if no worker can take one."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    if not workers:
        raise EnvironmentProblem(f"the Dask scheduler at {client.scheduler.address} has no workers",
                                 hint="start workers on the build hosts: `invoke worker --scheduler ADDRESS`")
    offered = {name for worker in workers for name in (worker.get("resources") or {})
               if name.startswith(ARCH_RESOURCE)}
    if not offered:
        return dict.fromkeys(architectures)  # no worker says what it runs: any worker takes any stage
    routes: dict[str, dict[str, float] | None] = {}
    for architecture in architectures:
        wanted = f"{ARCH_RESOURCE}{architecture}"
        if wanted not in offered:
            raise EnvironmentProblem(f"no worker of the Dask cluster runs {architecture} natively (workers offer "
                                     f"{', '.join(sorted(offered))})",
                                     hint=f"start a worker on a {architecture} host, or one with --resources "
                                          f"{wanted}=1")
        routes[architecture] = {wanted: 1}
    return routes


def submit(client: Any, builds: list[Build], targets: tuple[str, ...]) -> list[Any]:
    """Submit every stage the builds need; futures of every stage (one per distinct cache key)."""
    routes = routing(client, {build.profile.debian.architecture for build in builds})
    futures: dict[str, Any] = {}
    for build in builds:
        order = stages_for(build.profile, targets)
        _, keys = build.plan(order)
        # Workers use this machine's choice of bucket, whatever their environment says.
        profile = build.profile.model_copy(update={"cache": build.profile.cache.model_copy(
            update={"remote": build.remote.url if build.remote else None})})
        for name in order:
            task = f"{name}-{keys[name]}"
            if task in futures:
                continue  # another build needs the same stage: it runs once
            consumed = [futures[f"{required}-{keys[required]}"]
                        for required in STAGES[name]().requires_for(build.profile)]
            futures[task] = client.submit(run_stage, profile, name, keys[name], *consumed, key=task, pure=False,
                                          resources=routes[build.profile.debian.architecture])
    return list(futures.values())


def build_on_cluster(builds: list[Build], targets: tuple[str, ...], address: str, reporter: Reporter, *,
                     shared_cache: bool = False) -> list[StageDone]:
    """Run the builds' stages on the cluster, then bring their results into the local cache (from S3).

    Each build then publishes to out/ as a local build does; the stages' reports come back in the
    order they finished.
    """
    from distributed import as_completed

    for build in builds:
        # The bucket is checked before the scheduler is contacted. Workers on this machine (invoke
        # build-matrix --workers) share its local cache instead.
        if build.remote is None and not shared_cache:
            raise InputError(f"{build.profile.where}: building on a Dask cluster needs a remote stage cache, "
                             "which carries results between workers",
                             hint="set [cache] remote = \"s3://bucket/prefix\" or BOOTKILN_CACHE_REMOTE")
    client = connect(address)
    try:
        reporter.info(f"Dask scheduler {address}; dashboard {client.dashboard_link}")
        futures = submit(client, builds, targets)
        done: list[StageDone] = []
        try:
            for future in as_completed(futures, loop=client.loop):  # type: ignore[no-untyped-call]
                stage: StageDone = future.result()
                done.append(stage)
                how = "from cache" if stage.cached else "built"
                reporter.info(f"✔ {stage.profile}: {stage.name} {how} in {stage.seconds:.1f}s on {stage.worker}")
        except BaseException:
            client.cancel(futures)
            raise
    finally:
        client.close()
    for build in builds:
        build.run_stages(targets)  # every stage is in the bucket now: this only downloads
    return done


def start_local_cluster(workers: int, architecture: str) -> Any:
    """A Dask cluster of `workers` processes on this machine (one stage each at a time), sharing its stage
    cache (StageCache is safe for builds running at once), with a dashboard on loopback."""
    import logging

    from distributed import LocalCluster

    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",  # type: ignore[no-untyped-call]
                        dashboard_address="127.0.0.1:0", resources=worker_resources(architecture),
                        silence_logs=logging.WARNING)
