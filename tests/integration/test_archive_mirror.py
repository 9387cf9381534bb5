"""An unknown suite against the real mirror: the profile's fault, the key named, suites suggested.

Needs deb.debian.org, as every build of this tier does; no Docker engine is used. The task's exit
status is checked in test_docker_rootfs.py (test_unknown_suite_is_the_profiles_fault_and_names_the_mirror).
"""

from __future__ import annotations

import urllib.error
import urllib.request

from bootkiln.core.archive import resolve_archive
from bootkiln.errors import InputError
from bootkiln.profile.schema import DebianSettings
from tests.conftest import component_missing

MIRROR = "http://deb.debian.org/debian"


def require_mirror() -> None:
    try:
        urllib.request.urlopen(f"{MIRROR}/dists/stable/Release", timeout=20).close()  # noqa: S310 - fixed URL
    except (urllib.error.URLError, OSError) as exc:
        component_missing("deb.debian.org", str(exc))


def test_a_misspelt_suite_on_the_real_mirror_suggests_the_right_one() -> None:
    require_mirror()
    try:
        resolve_archive(DebianSettings(suite="bookwrom"))
    except InputError as error:
        assert "key 'debian.suite'" in error.message and "'bookwrom'" in error.message
        assert error.hint.startswith("did you mean 'bookworm'?")
        assert "stable" in error.hint
    else:
        raise AssertionError("the suite 'bookwrom' was accepted")

