"""A build matrix: several profiles (and architectures) built at once, then one table of what came out.

Locally, every build's stage graph goes into one Dask graph on this machine's threads: a stage two
profiles share (same cache key: the kernel, busybox and boot files of most profiles) is one task.
With a scheduler, the same graph runs on the cluster (scale/cluster.py) and its dashboard is named.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from bootkiln import parallel
from bootkiln.console import Reporter
from bootkiln.pipeline import Build, stages_for
from bootkiln.profile.schema import Profile
from bootkiln.scale.cluster import build_on_cluster, start_local_cluster
from bootkiln.stages.base import StageResult


@dataclass(frozen=True)
class Row:
    build: str
    artifact: str
    sha256: str
    size: int


def with_architecture(profile: Profile, architecture: str) -> Profile:
    """The profile built for another Debian architecture, published to out/<name>-<architecture>/."""
    if architecture == profile.debian.architecture:
        return profile
    return profile.model_copy(update={
        "name": f"{profile.name}-{architecture}",
        "debian": profile.debian.model_copy(update={"architecture": architecture})})


def run_together(builds: Sequence[Build], targets: tuple[str, ...], jobs: int) -> None:
    """Every build's stages in one graph on this machine; a stage several builds need runs once."""
    graph: dict[str, parallel.Task] = {}
    plans: list[tuple[Build, list[str], dict[str, str]]] = []
    for build in builds:
        build.check(targets)
        build.remote  # noqa: B018 - an unreachable bucket is named before any stage runs
        order = [name for name in stages_for(build.profile, targets) if name not in build.results]
        tasks, keys = build.plan(order)
        for task_key, task in tasks.items():
            graph.setdefault(task_key, task)
        plans.append((build, order, keys))

    def stop(cause: BaseException) -> None:
        for build in builds:
            build.stop(cause)

    done: dict[str, StageResult] = parallel.run_in_threads(graph, list(graph), jobs, stop)
    for build, order, keys in plans:
        for name in order:
            build.results[name] = done[f"{name}-{keys[name]}"]


def build_matrix(profiles: Sequence[Profile], targets: tuple[str, ...], reporter: Reporter,
                 scheduler: str | None, jobs: int | None, workers: int = 0) -> list[Row]:
    """Build every profile's targets at once and publish each; the artifacts' table rows.

    With `workers`, a Dask cluster of that many processes is started on this machine for the run.
    """
    builds = [Build(profile, reporter=Reporter(console=reporter.console, prefix=profile.name), jobs=jobs)
              for profile in profiles]
    started = time.monotonic()
    on_workers: dict[str, tuple[float, bool]] | None = None
    if workers:
        with start_local_cluster(workers, builds[0].engine.architecture()) as cluster:
            done = build_on_cluster(builds, targets, cluster.scheduler_address, reporter, shared_cache=True)
        on_workers = {f"{stage.name}-{stage.key}": (stage.seconds, stage.cached) for stage in done}
    elif scheduler is not None:
        done = build_on_cluster(builds, targets, scheduler, reporter)
        # The workers' figures: locally every stage then only came from the bucket.
        on_workers = {f"{stage.name}-{stage.key}": (stage.seconds, stage.cached) for stage in done}
    else:
        reporter.info("no Dask scheduler given: building on this machine's threads (no dashboard; pass "
                      "--workers N for worker processes here, or --scheduler tcp://HOST:8786 for a cluster)")
        run_together(builds, targets, builds[0].jobs)
    rows: list[Row] = []
    for build in builds:
        out = build.publish()
        for result in build.results.values():
            for artifact, digest in sorted(result.metadata["sha256"].items()):
                if result.name in targets:
                    rows.append(Row(build.profile.name, artifact, digest, (out / artifact).stat().st_size))
    summarize(builds, rows, time.monotonic() - started, reporter, on_workers)
    return rows


def summarize(builds: Sequence[Build], rows: Sequence[Row], wall: float, reporter: Reporter,
              on_workers: dict[str, tuple[float, bool]] | None = None) -> None:
    """A plain-text table (CI logs are not terminals): one line per artifact of each build.

    Stage time is the sum of the build's stage times (a stage two builds share counts for both) and
    cache hits the stages taken from a cache; on a cluster, as the workers reported them.
    """
    width = max((len(row.build) for row in rows), default=5)
    name_width = max((len(row.artifact) for row in rows), default=8)
    lines = [f"build matrix: {len(builds)} builds in {wall:.1f}s",
             f"  {'build':<{width}}  {'artifact':<{name_width}}  {'bytes':>13}  {'sha256':<64}  stage time  cache hits"]
    for build in builds:
        if on_workers is None:
            busy = sum(timing.seconds for timing in build.reporter.timings)
            hits = sum(1 for result in build.results.values() if result.cached)
        else:
            reports = [on_workers[f"{r.name}-{r.key}"] for r in build.results.values() if f"{r.name}-{r.key}" in
                       on_workers]
            busy, hits = sum(seconds for seconds, _ in reports), sum(1 for _, cached in reports if cached)
        for row in (row for row in rows if row.build == build.profile.name):
            lines.append(f"  {row.build:<{width}}  {row.artifact:<{name_width}}  {row.size:>13,}  {row.sha256}  "
                         f"{busy:>9.1f}s  {hits}/{len(build.results)}")
    reporter.info("\n".join(lines))
