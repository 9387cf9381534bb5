"""Foreign binaries: a rootless engine is refused before any container, a refused registration is an
environment error that says what to do, and a native target needs nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from bootkiln.core.binfmt import ensure_binfmt, hold_binfmt
from bootkiln.core.engine import Endpoint, HoldFailed
from bootkiln.errors import CommandFailed, EnvironmentProblem, Fault


@dataclass
class FakeClient:
    security_options: list[str]

    def info(self) -> dict[str, Any]:
        return {"Architecture": "x86_64", "SecurityOptions": self.security_options}


@dataclass
class FakeEngine:
    client: FakeClient
    endpoint: Endpoint = field(default_factory=lambda: Endpoint("unix:///run/user/1000/docker.sock", "test"))

    def rootless(self) -> bool:
        return any("name=rootless" in option for option in self.client.info()["SecurityOptions"])


@dataclass
class FakeRunner:
    status: int = 0
    output: Sequence[str] = ()
    calls: list[list[str]] = field(default_factory=list)

    def run(self, argv: Sequence[str], **_: Any) -> list[str]:
        self.calls.append(list(argv))
        if self.status:
            raise CommandFailed(stage="binfmt", where="test", argv=argv, status=self.status, tail=list(self.output))
        return list(self.output)


def call(runner: FakeRunner, options: list[str], target: str = "arm64") -> str:
    engine: Any = FakeEngine(FakeClient(options))
    return ensure_binfmt(runner, engine, image="builder", target=target, builder="amd64",  # type: ignore[arg-type]
                         uploads=[])


def test_a_native_target_needs_no_container() -> None:
    runner = FakeRunner()
    assert call(runner, ["name=rootless"], target="amd64") == "native"
    assert runner.calls == []


def test_a_rootless_engine_is_refused_before_any_container() -> None:
    runner = FakeRunner()
    with pytest.raises(EnvironmentProblem) as caught:
        call(runner, ["name=seccomp,profile=builtin", "name=rootless", "name=cgroupns"])
    assert caught.value.fault is Fault.ENVIRONMENT and caught.value.fault.exit_code == 3
    assert "rootless" in caught.value.message and "arm64" in caught.value.message
    assert "qemu-user" in caught.value.hint
    assert runner.calls == [], "no container was started"


def test_a_refused_registration_says_why() -> None:
    runner = FakeRunner(status=3, output=["binfmt.sh: cannot mount binfmt_misc (the container lacks CAP_SYS_ADMIN "
                                          "or the kernel has no binfmt_misc)"])
    with pytest.raises(EnvironmentProblem) as caught:
        call(runner, ["name=seccomp,profile=builtin"])
    assert "cannot run arm64 binaries and bootkiln could not register qemu-user" in caught.value.message
    assert "cannot mount binfmt_misc" in caught.value.message
    assert runner.calls == [["/bootkiln/binfmt.sh", "arm64"]]


def test_other_failures_are_not_disguised() -> None:
    with pytest.raises(CommandFailed):
        call(FakeRunner(status=1, output=["boom"]), [])


def test_what_ran_is_reported() -> None:
    assert call(FakeRunner(output=["binfmt: registered qemu-aarch64 F"]), []) == (
        "qemu-user via binfmt_misc (registered qemu-aarch64 F)")


def test_a_kernel_that_runs_the_target_itself_is_reported_as_native() -> None:
    # An emulated arm64 builder on an amd64 host, building amd64: no handler, the host runs it.
    engine: Any = FakeEngine(FakeClient([]))
    runner = FakeRunner(output=["binfmt: native amd64 (the kernel runs it without a handler)"])
    assert ensure_binfmt(runner, engine, image="builder", target="amd64", builder="arm64",  # type: ignore[arg-type]
                         uploads=[]) == "native amd64 (the kernel runs it without a handler)"
    assert runner.calls == [["/bootkiln/binfmt.sh", "amd64"]]


@dataclass
class HoldingEngine(FakeEngine):
    """An engine whose held container says `report`, or exits with `status` first."""

    report: str = ""
    status: int = 0
    held: list[list[str]] = field(default_factory=list)

    def hold(self, image: str, argv: list[str], *, ready: str, uploads: object, on_line: Any) -> tuple[str, str]:
        self.held.append(argv)
        if self.status:
            raise HoldFailed(self.status, ["binfmt.sh: the kernel refused to register qemu-aarch64 (read-only)"])
        on_line(self.report)
        return "bootkiln-hold-1", self.report


def hold(engine: HoldingEngine) -> str:
    return hold_binfmt(engine, image="native", target="arm64", uploads=[], on_line=lambda line: None)  # type: ignore[arg-type]


def test_an_emulated_builder_holds_the_handler_for_the_build() -> None:
    engine = HoldingEngine(FakeClient([]), report="binfmt: registered qemu-aarch64 F")
    assert hold(engine) == "qemu-user via binfmt_misc (registered qemu-aarch64 F)"
    assert engine.held == [["/bootkiln/binfmt.sh", "arm64", "hold"]]


def test_a_handler_that_cannot_be_held_is_an_environment_problem() -> None:
    with pytest.raises(EnvironmentProblem, match="could not register qemu-user for them: the kernel refused"):
        hold(HoldingEngine(FakeClient([]), status=3))
    with pytest.raises(CommandFailed):
        hold(HoldingEngine(FakeClient([]), status=1))
    with pytest.raises(EnvironmentProblem, match="rootless"):
        hold(HoldingEngine(FakeClient(["name=rootless"])))
