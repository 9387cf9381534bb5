"""Developer tasks: the test command CI runs (`invoke test`).

The suite runs in two pytest passes: everything not marked `slow`, then the `slow` tier (the online
install, which runs debootstrap and the kernel's postinst under emulation, and the arm64 offline
install) when the time used so far leaves room for it within the budget. CI has 90 minutes and a
full run must stay well under 60; on a machine with KVM the slow tier fits easily, under TCG on 2
cores it may not. When it does not run, the output says so in a line of its own, with the command
that runs it; it is never counted as passed.
"""

from __future__ import annotations

import os
import sys
import time

from bootkiln.commands.guard import guarded
from bootkiln.console import Reporter
from bootkiln.core.runner import Host, Runner
from bootkiln.paths import project_root

BUDGET_MINUTES = 55.0
# The online install (25 min) and the arm64 offline install (its qemu-user rootfs and payload, 7-14
# min on 2 shared cores, and the install under TCG, 5.5 min).
SLOW_TIER_MINUTES = 40.0


def minutes_from_env(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def run_tests(pytest_args: list[str]) -> int:
    def action(reporter: Reporter) -> None:
        start = time.monotonic()
        runner = Runner(reporter)
        here = Host(cwd=project_root(), passthrough=True)
        pytest = [sys.executable, "-m", "pytest"]
        # Arguments given by hand select the tests themselves: one pass, no tiers.
        # --durations lists the slowest tests, so CI's log shows where the time budget goes.
        passes = ([("pytest", [*pytest, *pytest_args])] if pytest_args
                  else [("pytest", [*pytest, "--durations=30", "-m", "not slow"])])
        steps = [
            ("ruff", [sys.executable, "-m", "ruff", "check", "."], "fix the lint errors shown"),
            ("mypy", [sys.executable, "-m", "mypy"], "fix the type errors shown"),
            # pytest's own exit status passes through: 5 (no tests collected) fails the run too.
            *((name, argv, "see the failing tests above") for name, argv in passes),
        ]
        for name, argv, hint in steps:
            with reporter.stage(name) as progress:
                progress.verb = "passed"
                runner.run(argv, stage=name, where=here, hint=hint)
        if not pytest_args:
            run_slow_tier(reporter, runner, here, pytest, start)
        reporter.summary()

    return guarded(action)


def run_slow_tier(reporter: Reporter, runner: Runner, here: Host, pytest: list[str], start: float) -> None:
    budget = minutes_from_env("BOOTKILN_TEST_BUDGET", BUDGET_MINUTES)
    estimate = minutes_from_env("BOOTKILN_SLOW_ESTIMATE", SLOW_TIER_MINUTES)
    used = (time.monotonic() - start) / 60
    if used + estimate > budget:
        reporter.warn(f"slow tier NOT RUN: {used:.0f} min used, it takes about {estimate:.0f} min and the budget is "
                      f"{budget:.0f} min (BOOTKILN_TEST_BUDGET); run it with: invoke test --pytest-args='-m slow'")
        return
    with reporter.stage("pytest-slow", f"{used:.0f} of {budget:.0f} min used") as progress:
        progress.verb = "passed"
        runner.run([*pytest, "-m", "slow"], stage="pytest-slow", where=here, hint="see the failing tests above")
