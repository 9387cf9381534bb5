"""An unknown suite is the profile's fault, found when the archive is resolved (before any container).

A fake mirror on 127.0.0.1 stands for the real one: with and without a dists/ folder listing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bootkiln.core.archive import resolve_archive
from bootkiln.errors import Fault, InputError
from bootkiln.profile.schema import DebianSettings

RELEASE = b"Origin: Debian\nSuite: stable\nCodename: bookworm\nDate: Sat, 10 Jun 2023 08:40:00 UTC\n"
SUITES = ("bookworm", "bookworm-backports", "trixie", "stable", "testing", "unstable")


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class NoListing(Quiet):
    """Like deb.debian.org: files are served, folders are not listed."""

    def list_directory(self, path: str | Path) -> None:  # type: ignore[override]
        self.send_error(404, "No listing")


def serve(root: Path, handler: type[SimpleHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/debian"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def mirror_tree(tmp_path: Path) -> Path:
    for suite in SUITES:
        folder = tmp_path / "debian" / "dists" / suite
        folder.mkdir(parents=True)
        (folder / "InRelease").write_bytes(RELEASE)
        (folder / "Release").write_bytes(RELEASE)
    return tmp_path


@pytest.fixture
def listing_mirror(mirror_tree: Path) -> Iterator[str]:
    yield from serve(mirror_tree, Quiet)


@pytest.fixture
def unlisted_mirror(mirror_tree: Path) -> Iterator[str]:
    yield from serve(mirror_tree, NoListing)


def refused(mirror: str, suite: str) -> InputError:
    with pytest.raises(InputError) as caught:
        resolve_archive(DebianSettings(mirror=mirror, suite=suite), delays=(5, 5, 5))  # a retry would show
    assert caught.value.fault is Fault.INPUT
    assert caught.value.fault.exit_code == 2
    assert "key 'debian.suite'" in caught.value.message
    assert f"no suite {suite!r}" in caught.value.message
    return caught.value


def test_a_known_suite_resolves(listing_mirror: str) -> None:
    assert resolve_archive(DebianSettings(mirror=listing_mirror, suite="bookworm")).release_epoch == 1686386400


def test_a_listed_mirror_suggests_from_its_own_suites(listing_mirror: str) -> None:
    error = refused(listing_mirror, "bookwrom")
    assert error.hint.startswith("did you mean 'bookworm'")
    assert "the mirror has: bookworm, bookworm-backports, stable, testing, trixie, unstable" in error.hint


def test_an_unlisted_mirror_suggests_known_codenames_it_has(unlisted_mirror: str) -> None:
    error = refused(unlisted_mirror, "bookwrom")
    assert error.hint == "did you mean 'bookworm'? the mirror also has: stable, testing, unstable"


def test_a_typo_keeps_its_suffix(unlisted_mirror: str) -> None:
    error = refused(unlisted_mirror, "bookwrom-backports")
    assert error.hint.startswith("did you mean 'bookworm-backports'?")


def test_a_folder_that_is_no_mirror_says_to_check_the_mirror(unlisted_mirror: str) -> None:
    error = refused(unlisted_mirror.removesuffix("/debian") + "/nothing-here", "bookworm")
    assert "check debian.mirror" in error.hint


def test_a_file_mirror_without_the_suite_is_the_profiles_fault(mirror_tree: Path) -> None:
    error = refused(f"file://{mirror_tree / 'debian'}", "bookwrom")
    assert "no such file" in error.message
    assert error.hint.startswith("did you mean 'bookworm'?")
