"""Shared test helpers. Under CI=true a missing component fails a test; it never skips it."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def component_missing(component: str, why: str) -> NoReturn:
    message = f"{component} is not available: {why}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} (CI=true: this tier must run; .ci/run sets it up)", pytrace=False)
    pytest.skip(f"{message}; run tools/setup-host.sh to set it up")
