"""Developer tasks: the test command CI runs (`invoke test`)."""

from __future__ import annotations

import sys

from bootkiln.cli import guarded
from bootkiln.console import Reporter
from bootkiln.paths import project_root
from bootkiln.runner import Host, Runner


def run_tests(pytest_args: list[str]) -> int:
    def action(reporter: Reporter) -> None:
        runner = Runner(reporter)
        here = Host(cwd=project_root(), passthrough=True)
        steps = [
            ("ruff", [sys.executable, "-m", "ruff", "check", "."], "fix the lint errors shown"),
            ("mypy", [sys.executable, "-m", "mypy"], "fix the type errors shown"),
            # pytest's own exit status passes through: 5 (no tests collected) fails the run too.
            ("pytest", [sys.executable, "-m", "pytest", *pytest_args], "see the failing tests above"),
        ]
        for name, argv, hint in steps:
            with reporter.stage(name) as progress:
                progress.verb = "passed"
                runner.run(argv, stage=name, where=here, hint=hint)
        reporter.summary()

    return guarded(action)
