"""The sources.list every apt in a build uses: mirror or snapshot, generated in one place."""

from __future__ import annotations

from pathlib import Path

from bootkiln.core.archive import ArchiveState, resolve_archive, snapshot_mirror, sources_list
from bootkiln.profile.loader import load_profile


def state(snapshot: str | None, mirror: str = "http://deb.debian.org/debian") -> ArchiveState:
    return ArchiveState(mirror=mirror, suite="bookworm", snapshot=snapshot, release_sha256=None,
                        release_epoch=0, source_date_epoch=0)


def test_mirror_sources_are_signed_and_checked_for_validity() -> None:
    text = sources_list(state(None), ["main", "contrib"])
    assert text == ("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                    "http://deb.debian.org/debian bookworm main contrib\n")


def test_snapshot_sources_skip_valid_until_and_can_add_deb_src_and_extra_lines() -> None:
    pinned = state("20250520T000000Z", snapshot_mirror("http://deb.debian.org/debian", "20250520T000000Z"))
    text = sources_list(pinned, ["main"], source_packages=True,
                        extra_lines=["deb http://deb.debian.org/debian bookworm-backports main"])
    lines = text.splitlines()
    assert lines[0] == ("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg check-valid-until=no] "
                        "https://snapshot.debian.org/archive/debian/20250520T000000Z bookworm main")
    assert lines[1].startswith("deb-src [") and lines[1].endswith("20250520T000000Z bookworm main")
    assert lines[2] == "deb http://deb.debian.org/debian bookworm-backports main"


def test_snapshot_archive_follows_the_mirror_name() -> None:
    assert snapshot_mirror("http://deb.debian.org/debian-security/", "20250101T000000Z") == \
        "https://snapshot.debian.org/archive/debian-security/20250101T000000Z"


def test_a_pinned_profile_resolves_without_network_and_epoch_is_the_snapshot(tmp_path: Path) -> None:
    profile = tmp_path / "pinned.toml"
    profile.write_text('[debian]\nsnapshot = "20250520T000000Z"\n')
    calls: list[str] = []

    def fetch(url: str) -> bytes:
        calls.append(url)
        raise AssertionError("a snapshot is immutable: no fetch needed to key it")

    resolved = resolve_archive(load_profile(str(profile)).debian, fetch=fetch)
    assert calls == []
    assert resolved.source_date_epoch == 1747699200
    assert resolved.mirror == "https://snapshot.debian.org/archive/debian/20250520T000000Z"
