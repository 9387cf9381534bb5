"""Overlays: planned modes and owners that ignore the checkout's modes, and a byte-stable tar."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from bootkiln.core.overlay import OverlayEntry, overlay_archive, plan_overlays
from bootkiln.errors import InputError
from bootkiln.profile.loader import load_profile
from bootkiln.profile.schema import Profile

MTIME = 1_700_000_000


def make_overlay(root: Path, *, motd: str = "hello\n") -> Path:
    """An overlay checked out with a loose umask: group-writable files and folders."""
    (root / "etc" / "app").mkdir(parents=True)
    (root / "usr" / "local" / "bin").mkdir(parents=True)
    (root / "etc" / "motd").write_text(motd)
    (root / "etc" / "app" / "secret").write_text("token\n")
    (root / "usr" / "local" / "bin" / "tool").write_text("#!/bin/sh\necho tool\n")
    (root / "etc" / "app" / "current").symlink_to("secret")
    (root / "etc" / "motd").chmod(0o664)
    (root / "etc" / "app" / "secret").chmod(0o600)
    (root / "usr" / "local" / "bin" / "tool").chmod(0o775)
    (root / "etc" / "app").chmod(0o775)
    (root / "usr").chmod(0o700)
    return root


def profile_in(folder: Path, body: str) -> Profile:
    path = folder / "profile.toml"
    path.write_text(body)
    return load_profile(str(path))


def by_path(entries: list[OverlayEntry]) -> dict[str, OverlayEntry]:
    return {entry.path: entry for entry in entries}


def members(archive: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {member.name: member for member in tar.getmembers()}


def file_data(archive: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read()


def test_default_modes_ignore_the_checkout_modes(tmp_path: Path) -> None:
    make_overlay(tmp_path / "base")
    entries = plan_overlays(profile_in(tmp_path, '[rootfs]\noverlays = ["base"]\n'))
    planned = by_path(entries)
    assert [entry.path for entry in entries] == sorted(planned)
    assert set(planned) == {"/etc", "/etc/app", "/etc/app/current", "/etc/app/secret", "/etc/motd", "/usr",
                            "/usr/local", "/usr/local/bin", "/usr/local/bin/tool"}
    modes = {path: (entry.kind, f"{entry.mode:04o}") for path, entry in planned.items()}
    assert modes["/etc"] == ("dir", "0755")
    assert modes["/etc/app"] == ("dir", "0755")
    assert modes["/usr"] == ("dir", "0755")
    assert modes["/etc/motd"] == ("file", "0644")
    assert modes["/etc/app/secret"] == ("file", "0644")
    assert modes["/usr/local/bin/tool"] == ("file", "0755")
    assert modes["/etc/app/current"][0] == "link"
    assert planned["/etc/app/current"].target == "secret"
    assert all(entry.uid == 0 and entry.gid == 0 for entry in entries)


def test_attrs_override_mode_and_owner(tmp_path: Path) -> None:
    make_overlay(tmp_path / "base")
    profile = profile_in(tmp_path, '[rootfs]\noverlays = ["base"]\n'
                         '[rootfs.attrs."/etc/app/secret"]\nmode = "0600"\nuid = 1000\ngid = 50\n'
                         '[rootfs.attrs."/etc/app"]\nmode = "750"\n')
    planned = by_path(plan_overlays(profile))
    secret = planned["/etc/app/secret"]
    assert (secret.mode, secret.uid, secret.gid, secret.kind) == (0o600, 1000, 50, "file")
    assert secret.as_json() == {"path": "/etc/app/secret", "kind": "file", "mode": "0600", "uid": 1000,
                                "gid": 50, "target": ""}
    assert (planned["/etc/app"].mode, planned["/etc/app"].uid) == (0o750, 0)
    assert planned["/etc/motd"].mode == 0o644


def test_attrs_for_a_path_no_overlay_provides_is_refused(tmp_path: Path) -> None:
    make_overlay(tmp_path / "base")
    profile = profile_in(tmp_path, '[rootfs]\noverlays = ["base"]\n'
                         '[rootfs.attrs."/etc/missing"]\nmode = "0600"\n')
    with pytest.raises(InputError) as caught:
        plan_overlays(profile)
    assert "rootfs.attrs" in caught.value.message
    assert "/etc/missing" in caught.value.message
    assert str(profile.source) in caught.value.message


def test_later_overlays_win(tmp_path: Path) -> None:
    make_overlay(tmp_path / "first", motd="first\n")
    (tmp_path / "second" / "etc").mkdir(parents=True)
    (tmp_path / "second" / "etc" / "motd").write_text("second\n")
    (tmp_path / "second" / "etc" / "motd").chmod(0o755)
    entries = plan_overlays(profile_in(tmp_path, '[rootfs]\noverlays = ["first", "second"]\n'))
    motd = by_path(entries)["/etc/motd"]
    assert motd.source == (tmp_path / "second" / "etc" / "motd").resolve()
    assert motd.mode == 0o755
    assert "/etc/app/secret" in by_path(entries)  # the first overlay's other files stay
    assert file_data(overlay_archive(entries, MTIME), "etc/motd") == b"second\n"


def test_overlay_archive_members_are_as_planned(tmp_path: Path) -> None:
    make_overlay(tmp_path / "base")
    profile = profile_in(tmp_path, '[rootfs]\noverlays = ["base"]\n'
                         '[rootfs.attrs."/etc/app/secret"]\nmode = "0640"\nuid = 7\ngid = 8\n')
    entries = plan_overlays(profile)
    archive = overlay_archive(entries, MTIME)
    tar_members = members(archive)
    assert sorted(tar_members) == sorted(entry.path.lstrip("/") for entry in entries)
    for entry in entries:
        member = tar_members[entry.path.lstrip("/")]
        assert (member.mode, member.uid, member.gid, member.mtime) == (entry.mode, entry.uid, entry.gid, MTIME)
        assert member.uname == member.gname == ""
        assert {"dir": member.isdir(), "file": member.isfile(), "link": member.issym()}[entry.kind]
    assert tar_members["etc/app/current"].linkname == "secret"
    assert (tar_members["etc/app/secret"].mode, tar_members["etc/app/secret"].uid) == (0o640, 7)
    assert file_data(archive, "usr/local/bin/tool") == b"#!/bin/sh\necho tool\n"


def test_overlay_archive_is_byte_stable(tmp_path: Path) -> None:
    make_overlay(tmp_path / "one" / "base")
    entries = plan_overlays(profile_in(tmp_path / "one", '[rootfs]\noverlays = ["base"]\n'))
    first = overlay_archive(entries, MTIME)
    assert overlay_archive(entries, MTIME) == first
    assert overlay_archive(entries, MTIME + 1) != first

    # A second checkout of the same tree: other mtimes, other host modes, other location.
    copy = tmp_path / "two" / "base"
    shutil.copytree(tmp_path / "one" / "base", copy, symlinks=True, copy_function=shutil.copyfile)
    (copy / "usr" / "local" / "bin" / "tool").chmod(0o700)
    (copy / "etc" / "app" / "secret").chmod(0o644)
    for path in [copy, *copy.rglob("*")]:
        os.utime(path, (123_456, 123_456), follow_symlinks=False)
    copied = plan_overlays(profile_in(tmp_path / "two", '[rootfs]\noverlays = ["base"]\n'))
    assert [entry.as_json() for entry in copied] == [entry.as_json() for entry in entries]
    assert overlay_archive(copied, MTIME) == first


def test_special_files_are_refused(tmp_path: Path) -> None:
    make_overlay(tmp_path / "base")
    os.mkfifo(tmp_path / "base" / "etc" / "pipe")
    with pytest.raises(InputError, match="neither a file, a folder nor a symlink"):
        plan_overlays(profile_in(tmp_path, '[rootfs]\noverlays = ["base"]\n'))
