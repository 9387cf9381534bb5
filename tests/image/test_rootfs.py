"""Checks every bootkiln rootfs must pass, run inside the image by `invoke test-image`."""

from __future__ import annotations

from typing import Any

import pytest

# The profile's promises come from bootkiln.verify.testinfra_plugin; `host` is testinfra's.


def test_os_release_names_the_profile_suite(host: Any, profile: dict[str, Any]) -> None:
    os_release = host.file("/etc/os-release")
    assert os_release.exists
    suite = profile["debian"]["suite"]
    fields = dict(
        line.split("=", 1) for line in os_release.content_string.splitlines() if "=" in line
    )
    codename = fields.get("VERSION_CODENAME", "").strip('"')
    assert codename == suite or suite in {"stable", "testing", "unstable", "sid"}, (
        f"os-release says {codename!r}, profile asked for {suite!r}"
    )


def test_profile_packages_are_installed(host: Any, profile: dict[str, Any]) -> None:
    missing = [name for name in profile["rootfs"]["packages"] if not host.package(name.split(":")[0]).is_installed]
    assert not missing, f"packages from the profile not installed: {missing}"


def test_overlay_entry_is_in_place(host: Any, overlay_entry: dict[str, Any]) -> None:
    target = host.file(overlay_entry["path"])
    assert target.exists or target.is_symlink, f"{overlay_entry['path']} is missing"
    if overlay_entry["kind"] == "link":
        assert (target.is_symlink and target.linked_to == overlay_entry["target"]) or \
            host.run("readlink %s", overlay_entry["path"]).stdout.strip() == overlay_entry["target"]
        return
    if overlay_entry["kind"] == "dir":
        assert target.is_directory
    else:
        assert target.is_file
    assert f"{target.mode:04o}" == overlay_entry["mode"]
    assert (target.uid, target.gid) == (overlay_entry["uid"], overlay_entry["gid"])


def test_machine_id_is_empty(host: Any) -> None:
    machine_id = host.file("/etc/machine-id")
    assert machine_id.exists and machine_id.size == 0
    assert not host.file("/var/lib/dbus/machine-id").is_file


def test_no_ssh_host_keys(host: Any) -> None:
    keys = host.run("find /etc/ssh -maxdepth 1 -name 'ssh_host_*' 2>/dev/null").stdout.split()
    assert keys == []


def test_no_apt_lists_or_caches(host: Any) -> None:
    leftovers = host.run(
        "find /var/lib/apt/lists /var/cache/apt -type f 2>/dev/null; "
        "ls /var/cache/ldconfig/aux-cache 2>/dev/null"
    ).stdout.split()
    assert leftovers == []


def test_no_log_files(host: Any) -> None:
    assert host.run("find /var/log -type f").stdout.split() == []


@pytest.mark.parametrize("path", ["/etc/shadow"])
def test_shadow_last_change_is_pinned(host: Any, bootkiln_spec: dict[str, Any], path: str) -> None:
    day = str(bootkiln_spec["source_date_epoch"] // 86400)
    content = host.run("cat %s", path).stdout
    changed = {line.split(":")[2] for line in content.splitlines() if line.count(":") >= 2}
    assert changed <= {day, ""}, f"shadow last-change days {changed} differ from the archive day {day}"
