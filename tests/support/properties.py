"""Hypothesis profiles for the property tests.

"ci" (the default) is derandomized: the same examples on every run and machine, no example
database, and sized so that all the property tests together stay within about a minute.
HYPOTHESIS_PROFILE=deep searches ten times longer with fresh random examples, to hunt for new
failures locally; a failure prints the example and a blob to replay it with @reproduce_failure.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large,
          HealthCheck.filter_too_much]
settings.register_profile("ci", derandomize=True, database=None, deadline=None, suppress_health_check=_QUIET,
                          print_blob=True)
settings.register_profile("deep", deadline=None, suppress_health_check=_QUIET, print_blob=True)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def examples(count: int) -> int:
    """An example count for the active profile: `count` under ci, ten times as many under deep."""
    return count * 10 if PROFILE == "deep" else count
