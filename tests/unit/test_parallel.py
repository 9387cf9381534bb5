"""The stage graph runs on Dask's threaded scheduler: independent tasks at once, each task once, errors stop it."""

from __future__ import annotations

import threading
import time

import pytest

from bootkiln.errors import InputError
from bootkiln.parallel import Task, jobs_from, run_in_threads, run_serially


def diamond(log: list[str], barrier: threading.Barrier | None = None) -> dict[str, Task]:
    def step(name: str):  # type: ignore[no-untyped-def]
        def run(*consumed: str) -> str:
            log.append(name)
            if barrier is not None and name in ("left", "right"):
                barrier.wait(timeout=10)  # only passes if both sides run at the same time
            return f"{name}({','.join(consumed)})"
        return run

    return {"root": Task("root", step("root")), "left": Task("left", step("left"), ("root",)),
            "right": Task("right", step("right"), ("root",)),
            "top": Task("top", step("top"), ("left", "right"))}


def test_independent_tasks_run_at_once_and_each_task_runs_once() -> None:
    log: list[str] = []
    results = run_in_threads(diamond(log, threading.Barrier(2)), ["top", "left"], 2, lambda exc: None)
    assert results == {"top": "top(left(root()),right(root()))", "left": "left(root())"}
    assert sorted(log) == ["left", "right", "root", "top"]


def test_serial_order_gives_the_same_results() -> None:
    log: list[str] = []
    tasks = diamond(log)
    assert run_serially(tasks, list(tasks))["top"] == "top(left(root()),right(root()))"
    assert log == ["root", "left", "right", "top"]


def test_a_failing_task_stops_the_others_and_its_error_comes_out_after_they_unwound() -> None:
    stopping = threading.Event()
    unwound: list[str] = []

    def slow() -> str:
        stopping.wait(timeout=10)
        time.sleep(0.2)
        unwound.append("slow")
        return "slow"

    def bad() -> str:
        raise InputError("bad stage")

    tasks = {"slow": Task("slow", slow), "bad": Task("bad", bad), "top": Task("top", lambda a, b: a, ("slow", "bad"))}
    with pytest.raises(InputError, match="bad stage"):
        run_in_threads(tasks, ["top"], 2, lambda exc: stopping.set())
    assert unwound == ["slow"], "the error came out while a stage thread still ran"


@pytest.mark.parametrize(("environ", "override", "expected"), [({"BOOTKILN_JOBS": "1"}, None, 1),
                                                                ({"BOOTKILN_JOBS": "3"}, 2, 2), ({}, 4, 4)])
def test_jobs_come_from_the_option_or_the_environment(environ: dict[str, str], override: int | None,
                                                      expected: int) -> None:
    assert jobs_from(environ, override) == expected


def test_jobs_default_to_at_least_two() -> None:
    assert jobs_from({}) >= 2


@pytest.mark.parametrize("value", ["0", "many", "-1"])
def test_a_bad_jobs_setting_is_an_input_error_naming_it(value: str) -> None:
    with pytest.raises(InputError, match=f"BOOTKILN_JOBS='{value}'"):
        jobs_from({"BOOTKILN_JOBS": value})
