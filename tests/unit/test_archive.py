"""The archive state a build pins to: Release Date and hash, snapshots, retries with named failures."""

from __future__ import annotations

import hashlib
import time
import urllib.error
from email.message import Message

import pytest

from bootkiln.core.archive import fetch_with_retries, release_date, resolve_archive, snapshot_epoch
from bootkiln.errors import EnvironmentProblem, Fault, InputError
from bootkiln.profile.schema import DebianSettings

RELEASE = b"""Origin: Debian
Label: Debian
Suite: stable
Codename: bookworm
Date: Sat, 10 Jun 2023 08:40:00 UTC
Architectures: all amd64
"""
RELEASE_EPOCH = 1686386400  # 2023-06-10T08:40:00Z
SNAPSHOT = "20250520T000000Z"
SNAPSHOT_EPOCH = 1747699200  # 2025-05-20T00:00:00Z


class Recorder:
    """A fetch that fails with the given exceptions in turn, then returns `data`."""

    def __init__(self, failures: list[Exception], data: bytes = RELEASE) -> None:
        self.failures = failures
        self.data = data
        self.urls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        if self.failures:
            raise self.failures.pop(0)
        return self.data


def http_error(code: int, headers: dict[str, str] | None = None) -> urllib.error.HTTPError:
    message = Message()
    for name, value in (headers or {}).items():
        message[name] = value
    return urllib.error.HTTPError("http://x", code, "error", message, None)


def never_fetch(url: str) -> bytes:
    raise AssertionError(f"a snapshot must not need the network, but {url} was fetched")


def test_release_date_parses_the_date_field() -> None:
    assert release_date(RELEASE.decode()) == RELEASE_EPOCH
    assert release_date("Date: Sat, 10 Jun 2023 10:40:00 +0200\n") == RELEASE_EPOCH


def test_release_without_date_is_an_environment_problem() -> None:
    with pytest.raises(EnvironmentProblem, match="no Date field"):
        release_date("Origin: Debian\nSuite: stable\n")


def test_resolve_archive_hashes_the_release_and_takes_its_date() -> None:
    fetch = Recorder([])
    state = resolve_archive(DebianSettings(), fetch=fetch, delays=(0, 0))
    assert fetch.urls == ["http://deb.debian.org/debian/dists/bookworm/InRelease"]
    assert state.release_sha256 == hashlib.sha256(RELEASE).hexdigest()
    assert state.release_epoch == state.source_date_epoch == RELEASE_EPOCH
    assert state.snapshot is None
    assert state.mirror == "http://deb.debian.org/debian"
    assert state.suite == "bookworm"
    assert state.identity()["release_sha256"] == state.release_sha256


def test_a_different_release_gives_a_different_identity() -> None:
    first = resolve_archive(DebianSettings(), fetch=Recorder([]), delays=(0, 0))
    second = resolve_archive(DebianSettings(), fetch=Recorder([], RELEASE + b"Changed: yes\n"), delays=(0, 0))
    assert first.identity() != second.identity()


def test_transient_failures_are_retried_until_success() -> None:
    fetch = Recorder([urllib.error.URLError("timed out"), http_error(503)])
    state = resolve_archive(DebianSettings(), fetch=fetch, delays=(0, 0))
    assert len(fetch.urls) == 3
    assert state.release_epoch == RELEASE_EPOCH


def test_unreachable_mirror_is_tried_three_times_then_named() -> None:
    settings = DebianSettings(mirror="http://mirror.invalid/debian", suite="trixie")
    fetch = Recorder([urllib.error.URLError("Name or service not known") for _ in range(10)])
    with pytest.raises(EnvironmentProblem) as caught:
        resolve_archive(settings, fetch=fetch, delays=(0, 0))
    assert len(fetch.urls) == 3
    message = caught.value.message
    assert "http://mirror.invalid/debian" in message
    assert "'trixie'" in message
    assert "3 attempts" in message
    assert "Name or service not known" in message
    assert caught.value.fault is Fault.ENVIRONMENT
    assert "debian.mirror" in caught.value.hint


def test_unknown_suite_404_is_the_profiles_fault_and_not_retried() -> None:
    """A 404 for the suite's InRelease is the profile's mistake: no retries, exit 2, the key named."""
    settings = DebianSettings(suite="bookwrom")
    fetch = Recorder([http_error(404) for _ in range(10)])
    with pytest.raises(InputError) as caught:
        resolve_archive(settings, fetch=fetch, delays=(0, 0))
    assert fetch.urls[0] == "http://deb.debian.org/debian/dists/bookwrom/InRelease"
    assert fetch.urls.count(fetch.urls[0]) == 1
    message = caught.value.message
    assert caught.value.fault is Fault.INPUT
    assert "key 'debian.suite'" in message
    assert "http://deb.debian.org/debian" in message
    assert "'bookwrom'" in message
    assert "HTTP 404" in message
    assert "check debian.mirror" in caught.value.hint  # this fake mirror has no suite at all


def test_a_missing_kernel_apt_source_is_the_profiles_fault() -> None:
    fetch = Recorder([http_error(404)])
    with pytest.raises(InputError) as caught:
        fetch_with_retries("http://m/debian/dists/nope/InRelease", what="kernel.apt_source 'deb ...'",
                           fetch=fetch, delays=(0, 0))
    assert len(fetch.urls) == 1
    assert "kernel.apt_source" in caught.value.message and "HTTP 404" in caught.value.message


def test_retries_wait_as_told(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)  # bootkiln.core.archive calls time.sleep
    fetch = Recorder([urllib.error.URLError("down"), http_error(503, {"Retry-After": "7"})])
    resolve_archive(DebianSettings(), fetch=fetch, delays=(1.5, 3.0))
    assert slept == [1.5, 7.0]


def test_snapshot_pins_mirror_and_epoch_without_the_network() -> None:
    state = resolve_archive(DebianSettings(snapshot=SNAPSHOT), fetch=never_fetch, delays=(0, 0))
    assert state.mirror == f"https://snapshot.debian.org/archive/debian/{SNAPSHOT}"
    assert state.snapshot == SNAPSHOT
    assert state.release_sha256 is None
    assert state.source_date_epoch == state.release_epoch == SNAPSHOT_EPOCH == snapshot_epoch(SNAPSHOT)


def test_snapshot_of_another_archive_keeps_its_name() -> None:
    settings = DebianSettings(mirror="http://security.debian.org/debian-security", snapshot=SNAPSHOT)
    state = resolve_archive(settings, fetch=never_fetch)
    assert state.mirror == f"https://snapshot.debian.org/archive/debian-security/{SNAPSHOT}"


def test_source_date_epoch_override_wins() -> None:
    pinned = resolve_archive(DebianSettings(snapshot=SNAPSHOT, source_date_epoch=12345), fetch=never_fetch)
    assert pinned.source_date_epoch == 12345
    assert pinned.release_epoch == SNAPSHOT_EPOCH
    live = resolve_archive(DebianSettings(source_date_epoch=0), fetch=Recorder([]), delays=(0, 0))
    assert live.source_date_epoch == 0
    assert live.release_epoch == RELEASE_EPOCH
