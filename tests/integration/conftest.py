"""Docker tier fixtures: one real engine, and one default-profile rootfs built once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from bootkiln.config import load_profile
from bootkiln.console import Reporter
from bootkiln.engine import Engine, connect
from bootkiln.errors import EnvironmentProblem
from bootkiln.paths import Workspace
from bootkiln.pipeline import Build
from bootkiln.runner import Builder, Host, Runner
from bootkiln.stages.base import StageResult
from tests.conftest import component_missing

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def engine() -> Engine:
    try:
        return connect(lambda message: None)
    except EnvironmentProblem as exc:
        component_missing("Docker engine", exc.message)


class RecordingRunner(Runner):
    """A runner that notes each container step as 'last-argument:network'."""

    def __init__(self, reporter: Reporter, engine: Engine) -> None:
        super().__init__(reporter, engine)
        self.container_steps: list[str] = []

    def run(self, argv: Sequence[str], *, stage: str, where: Host | Builder, hint: str = "",
            missing_hint: str = "") -> list[str]:
        if isinstance(where, Builder):
            self.container_steps.append(f"{argv[-1]}:{where.network}")
        return super().run(argv, stage=stage, where=where, hint=hint, missing_hint=missing_hint)


@dataclass(frozen=True)
class SessionBuild:
    build: Build
    rootfs: StageResult
    workspace: Workspace
    container_steps: list[str]


@pytest.fixture(scope="session")
def default_rootfs(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> SessionBuild:
    """The default profile's rootfs, built from an empty cache once for the whole session."""
    base = tmp_path_factory.mktemp("primary")
    workspace = Workspace(cache=base / "cache", out=base / "out")
    build = Build(load_profile(None), workspace=workspace, reporter=Reporter())
    runner = RecordingRunner(build.reporter, engine)
    build.runner = runner
    return SessionBuild(build, build.rootfs(), workspace, runner.container_steps)


@dataclass(frozen=True)
class Completed:
    returncode: int
    output: str


def invoke(args: list[str], *, env: Mapping[str, str] | None = None, timeout: float = 900) -> Completed:
    """Run an Invoke task as a user would, from the checkout."""
    process = subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=ROOT, env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False,
    )
    return Completed(process.returncode, process.stdout)


@pytest.fixture
def isolated(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for a task run with its own cache and output folders."""
    yield {"BOOTKILN_CACHE": str(tmp_path / "cache"), "BOOTKILN_OUT": str(tmp_path / "out")}
