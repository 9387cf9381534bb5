"""An unknown suite against the real mirror: the profile's fault (exit 2), the key named, suites suggested.

Needs deb.debian.org, as every build of this tier does; no Docker engine is reached, since the archive
is resolved before any container.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from bootkiln.core.archive import resolve_archive
from bootkiln.errors import InputError
from bootkiln.profile.schema import DebianSettings
from tests.conftest import component_missing
from tests.fixtures import invoke

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


def test_invoke_rootfs_with_a_misspelt_suite_exits_2(tmp_path: Path) -> None:
    require_mirror()
    profile = tmp_path / "typo.toml"
    profile.write_text('[debian]\nsuite = "bookwrom"\n')
    result = invoke(["rootfs", "--profile", str(profile)], env={"BOOTKILN_CACHE": str(tmp_path / "cache"),
                                                                 "BOOTKILN_OUT": str(tmp_path / "out")}, timeout=300)
    assert result.returncode == 2, result.output
    assert "error (bad input): key 'debian.suite'" in result.output
    assert "did you mean 'bookworm'?" in result.output
    assert "▶ rootfs" not in result.output  # refused before any stage started
