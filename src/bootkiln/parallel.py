"""Run a build's stage graph with Dask's local threaded scheduler: independent stages at once, on this machine.

Dask decides what runs when (a task starts once the tasks it consumes are done); bootkiln only says
what each task is and what it consumes. Each task is keyed by its stage's cache key, so a stage that
two targets need is one task. The threads are ours (a pool made here), so an interrupt can wait for
them: a stage thread must unwind (its scratch folder removed, its container gone) before the build
reports the interrupt, or a half-made cache entry could outlive the build.

BOOTKILN_JOBS sets how many stages may run at once; 1 runs them one after another in this thread,
exactly as before Dask (the serial reference for benchmarks).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bootkiln.errors import InputError

JOBS_VARIABLE = "BOOTKILN_JOBS"


@dataclass(frozen=True)
class Task:
    """One node of the graph: `run(*results of requires)`, named by `key` (the stage's cache key)."""

    key: str
    run: Callable[..., Any]
    requires: tuple[str, ...] = ()


def jobs_from(environ: Mapping[str, str] = os.environ, override: int | None = None) -> int:
    """How many stages may run at once: the override, BOOTKILN_JOBS, or one per core (at least two)."""
    if override is not None:
        value, source = str(override), "--jobs"
    else:
        value, source = environ.get(JOBS_VARIABLE, ""), JOBS_VARIABLE
        if not value:
            # Most stages wait on a container or the network, so two run well even on one core.
            return max(2, os.cpu_count() or 1)
    if not value.isdigit() or int(value) < 1:
        raise InputError(f"{source}={value!r} is not a whole number of stages to run at once",
                         hint=f"set {source} to 1 (one stage at a time) or more, or leave it unset")
    return int(value)


def run_serially(tasks: Mapping[str, Task], order: Sequence[str]) -> dict[str, Any]:
    """Run the tasks in `order` (dependencies first) in this thread; their results by key."""
    results: dict[str, Any] = {}
    for key in order:
        task = tasks[key]
        results[key] = task.run(*(results[required] for required in task.requires))
    return results


def run_in_threads(tasks: Mapping[str, Task], targets: Sequence[str], jobs: int,
                   stop: Callable[[BaseException], None]) -> dict[str, Any]:
    """Run the graph on `jobs` threads with Dask; the targets' results by key.

    On an interrupt or a failed stage, `stop` tells the stages still running to stop (it removes their
    containers), then this waits for every stage thread to unwind before re-raising: the error is
    reported after the build is quiet, as it was when stages ran one at a time.
    """
    from dask.base import compute
    from dask.delayed import Delayed, delayed

    nodes: dict[str, Delayed] = {}

    def node(key: str) -> Delayed:
        if key not in nodes:
            task = tasks[key]
            inputs = [node(required) for required in task.requires]
            nodes[key] = delayed(task.run, pure=False)(*inputs, dask_key_name=key)
        return nodes[key]

    wanted = [node(key) for key in targets]
    pool = ThreadPoolExecutor(jobs, thread_name_prefix="bootkiln-stage")
    try:
        computed = compute(*wanted, scheduler="threads", pool=pool)  # type: ignore[no-untyped-call]
    except BaseException as exc:
        stop(exc)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return dict(zip(targets, computed, strict=True))
