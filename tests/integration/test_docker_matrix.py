"""invoke build-matrix: several profiles in one Dask graph on this machine; a shared stage runs once."""

from __future__ import annotations

import re

from tests.fixtures import invoke


def test_a_matrix_builds_a_stage_two_profiles_share_once_and_ends_with_a_table(isolated: dict[str, str]) -> None:
    result = invoke(["build-matrix", "-p", "default", "-p", "rescue", "--target", "bootloader"], env=isolated,
                    timeout=600)
    assert result.returncode == 0, result.output
    output = result.output
    # Both profiles' boot files have one cache key: one task, built once, and both builds get it.
    assert len(re.findall(r"✔ \S+/bootloader built in", output)) == 1, output
    assert "build matrix: 2 builds in" in output and "no dashboard" in output, output
    rows = re.findall(r"^  (default|rescue) +(efiboot\.img) +[\d,]+  ([0-9a-f]{64}) ", output, re.MULTILINE)
    assert {row[0] for row in rows} == {"default", "rescue"}, output
    assert rows[0][2] == rows[1][2]


def test_a_matrix_on_local_worker_processes_names_its_dashboard(isolated: dict[str, str]) -> None:
    result = invoke(["build-matrix", "-p", "default", "-p", "rescue", "--target", "bootloader", "--workers", "2"],
                    env=isolated, timeout=600)
    assert result.returncode == 0, result.output
    assert re.search(r"dashboard http://127\.0\.0\.1:\d+/status", result.output), result.output
    # One task for the stage both profiles share, run by one of the two worker processes.
    assert len(re.findall(r": bootloader (built|from cache) in .* on tcp://127\.0\.0\.1", result.output)) == 1
    assert "build matrix: 2 builds in" in result.output
