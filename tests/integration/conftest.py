"""Docker tier: every test here talks to a real Docker engine (CI=true fails rather than skips)."""

from __future__ import annotations

import pytest

from tests.fixtures import (
    default_disk,
    default_iso,
    default_rootfs,
    diskless,
    engine,
    isolated,
    ownkey,
    session_build,
)

__all__ = ["default_disk", "default_iso", "default_rootfs", "diskless", "engine", "isolated", "ownkey",
           "session_build"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.docker)
