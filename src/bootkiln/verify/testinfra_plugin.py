"""pytest plugin for image checks: what the profile promised, as fixtures for testinfra tests.

Loaded by `invoke test-image` with `-p bootkiln.verify.testinfra_plugin`. A user's own check file (listed
in the profile's `checks.paths`) can use the same fixtures: `host` (testinfra), `bootkiln_spec`,
`profile` and, for a parametrised test, `overlay_entry`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bootkiln-spec", help="JSON description of the image under test (written by bootkiln)")


def _spec(config: pytest.Config) -> dict[str, Any]:
    path = config.getoption("--bootkiln-spec")
    if not path:
        raise pytest.UsageError("image checks need --bootkiln-spec; run them with `invoke test-image`")
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "overlay_entry" in metafunc.fixturenames:
        entries = _spec(metafunc.config)["overlay"]
        metafunc.parametrize("overlay_entry", entries, ids=[entry["path"] for entry in entries])


@pytest.fixture(scope="session")
def bootkiln_spec(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _spec(request.config)


@pytest.fixture(scope="session")
def profile(bootkiln_spec: dict[str, Any]) -> dict[str, Any]:
    resolved: dict[str, Any] = bootkiln_spec["profile"]
    return resolved
