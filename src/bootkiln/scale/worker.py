"""Starting a Dask worker on a build host, advertising what its Docker engine runs natively.

`dask worker` knows nothing of Docker; this asks the engine (`docker info`) for its architecture
and starts the worker with the matching resource (`arch-amd64`), which the cluster client routes
stages by (scale/cluster.py). The worker is `dask worker` itself: nothing here schedules anything.
"""

from __future__ import annotations

import sys

from bootkiln.scale.cluster import worker_resources


def worker_argv(address: str, architecture: str, threads: int, name: str | None = None) -> list[str]:
    # A worker runs as many stages at once as it has threads; each stage holds one unit of the resource.
    resources = " ".join(f"{resource}={threads}" for resource in worker_resources(architecture))
    argv = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", str(threads),
            "--resources", resources]
    return [*argv, "--name", name] if name else argv
