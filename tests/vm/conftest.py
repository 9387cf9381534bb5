"""VM tier: real QEMU boots of images built by the Docker tier (CI=true fails rather than skips)."""

from __future__ import annotations

import pytest

from bootkiln.console import Reporter
from bootkiln.core.runner import Runner
from bootkiln.errors import EnvironmentProblem
from bootkiln.verify.qemu import Accel, choose_accel, find_ovmf, qemu_binary
from tests.conftest import component_missing
from tests.fixtures import (
    SessionBuild,
    arm64_build,
    arm64_disk,
    default_disk,
    default_iso,
    diskless,
    diskless_arm64,
    diskless_live,
    diskless_live_arm64,
    engine,
    installer,
    installer_arm64,
    ownkey,
    session_build,
)

__all__ = ["arm64_build", "arm64_disk", "default_disk", "default_iso", "diskless", "diskless_arm64", "diskless_live",
           "diskless_live_arm64", "engine", "installer",
           "installer_arm64", "ownkey", "session_build"]


@pytest.fixture(scope="session")
def accel(session_build: SessionBuild, qemu_ready: None) -> Accel:
    return choose_accel(Runner(Reporter()), session_build.build.stage("kernel").artifact("vmlinuz"))


@pytest.fixture(scope="session")
def qemu_arm64_ready() -> None:
    try:
        qemu_binary("arm64")
        find_ovmf("arm64")
    except EnvironmentProblem as exc:
        component_missing("qemu-system-aarch64 with AAVMF", f"{exc.message} ({exc.hint})")


@pytest.fixture(scope="session")
def qemu_ready() -> None:
    try:
        qemu_binary()
        find_ovmf()
    except EnvironmentProblem as exc:
        component_missing("QEMU with OVMF", f"{exc.message} ({exc.hint})")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "vm" in item.path.parts:
            item.add_marker(pytest.mark.vm)
