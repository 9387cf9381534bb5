"""A signal while several stages run at once (Dask threads) leaves nothing behind, as with one stage.

`invoke build-iso` from an empty cache starts the kernel and busybox stages together; the test waits
until two of the build's containers run, then sends SIGINT.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bootkiln.core.cache import StageCache
from bootkiln.core.engine import Engine
from bootkiln.core.lease import HOLDER_LABEL
from tests.fixtures import ROOT
from tests.integration.test_docker_signals import HOST, children, default_signals, owned_by


@pytest.mark.docker
def test_an_interrupt_stops_every_running_stage_and_keeps_no_partial_entry(
        engine: Engine, isolated: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    with log.open("wb") as handle:
        process = subprocess.Popen([sys.executable, "-m", "invoke", "build-iso"], cwd=ROOT,
                                   env={**os.environ, **isolated}, stdout=handle, stderr=subprocess.STDOUT,
                                   preexec_fn=default_signals)
    holder = f"{HOST}:{process.pid}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        running = engine.client.containers.list(filters={"label": f"{HOLDER_LABEL}={holder}", "status": "running"})
        if len(running) >= 2:
            break
        time.sleep(0.2)
    else:
        process.kill()
        raise AssertionError(f"two stages never ran at once:\n{log.read_text(errors='replace')}")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130, log.read_text(errors="replace")
    output = log.read_text(errors="replace")
    assert "interrupted by SIGINT after" in output and "no partial result was kept" in output, output
    assert "failed" not in output and "Traceback" not in output, output
    assert owned_by(engine, holder) == [], "a stage's container or volume outlived the build"
    cache = Path(isolated["BOOTKILN_CACHE"])
    assert children(cache / "tmp") == [], "a scratch folder stayed"
    for stage in ("kernel", "busybox", "initramfs", "iso"):
        entries = children(cache / "stages" / stage)
        assert all(StageCache(cache).lookup(stage, entry.name) is not None for entry in entries), \
            f"an incomplete {stage} entry was left"
    assert children(cache / "stages" / "busybox") == [], "busybox cannot have finished"
