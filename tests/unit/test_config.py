"""Profiles: built-in defaults, and strict validation whose errors name the file and the dotted key."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bootkiln.core.overlay import plan_overlays
from bootkiln.errors import Fault, InputError
from bootkiln.profile.loader import available_profiles, load_profile, overlay_dir
from bootkiln.profile.schema import DEFAULT_PROFILE, Profile

ROOT = Path(__file__).resolve().parents[2]
WriteProfile = Callable[[str], Path]


def refused(path_text: str) -> InputError:
    with pytest.raises(InputError) as caught:
        load_profile(path_text)
    assert caught.value.fault is Fault.INPUT
    assert caught.value.fault.exit_code == 2
    return caught.value


# --- the built-in default -----------------------------------------------------------------------

def test_default_profile_loads_without_any_file() -> None:
    profile = load_profile(None)
    assert profile.name == DEFAULT_PROFILE == "default"
    assert profile.source is None
    assert profile.debian.suite == "bookworm"
    assert profile.debian.architecture == "amd64"
    assert profile.debian.mirror == "http://deb.debian.org/debian"
    assert profile.debian.snapshot is None
    assert profile.debian.variant == "minbase"
    assert profile.debian.components == ["main"]
    assert profile.debian.source_date_epoch is None
    assert profile.rootfs.packages == []
    assert profile.rootfs.overlays == ["rootfs-base"]
    assert profile.rootfs.attrs == {}
    assert profile.base_dir == ROOT / "profiles"
    assert load_profile() == profile


def test_default_profile_overlay_resolves_to_the_project_overlays() -> None:
    assert overlay_dir(load_profile(None), "rootfs-base") == (ROOT / "overlays" / "rootfs-base").resolve()


def test_resolved_profile_is_json_and_hides_the_source(write_profile: WriteProfile) -> None:
    resolved = load_profile(str(write_profile('[debian]\nsuite = "trixie"\n'))).resolved()
    assert "source" not in resolved
    assert resolved["debian"]["suite"] == "trixie"
    assert resolved["debian"]["components"] == ["main"]  # defaults filled in
    assert json.loads(json.dumps(resolved)) == resolved


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "tiny-box.toml"
    path.write_text('description = "small"\n')
    profile = load_profile(str(path))
    assert profile.name == "tiny-box"
    assert profile.description == "small"
    assert profile.source == path.resolve()
    assert profile.base_dir == path.resolve().parent


def test_named_default_without_a_file_is_the_built_in_one(fake_home: Path) -> None:
    assert load_profile("default") == Profile()


# --- unknown keys and wrong types -----------------------------------------------------------------

def test_typo_key_names_file_dotted_key_and_allowed_keys(write_profile: WriteProfile) -> None:
    path = write_profile('[debian]\nsuitee = "bookworm"\n')
    error = refused(str(path))
    assert str(path) in error.message
    assert "debian.suitee" in error.message
    assert "unknown key" in error.message
    assert ("allowed here: architecture, components, mirror, snapshot, source_date_epoch, suite, variant"
            in error.message)
    assert error.hint


def test_top_level_typo_lists_top_level_keys_without_internal_ones(write_profile: WriteProfile) -> None:
    error = refused(str(write_profile('nmae = "x"\n')))
    assert "key 'nmae'" in error.message
    allowed = error.message.split("allowed here: ")[1].rstrip(")").split(", ")
    assert allowed == sorted(name for name in Profile.model_fields if name != "source")
    assert {"debian", "rootfs", "iso", "disk", "nfsroot", "name"} <= set(allowed) and "source" not in allowed


def test_wrong_type_names_the_dotted_key(write_profile: WriteProfile) -> None:
    path = write_profile('[rootfs]\npackages = "vim"\n')
    error = refused(str(path))
    assert str(path) in error.message
    assert "rootfs.packages" in error.message
    assert "valid list" in error.message
    assert "'vim'" in error.message


def test_bad_package_name_names_its_index(write_profile: WriteProfile) -> None:
    error = refused(str(write_profile('[rootfs]\npackages = ["vim", "Bad Name!"]\n')))
    assert "rootfs.packages.1" in error.message
    assert "rootfs.packages.0" not in error.message


def test_every_error_is_reported_at_once(write_profile: WriteProfile) -> None:
    error = refused(str(write_profile('[debian]\narchitecture = "m68k"\n[rootfs]\npackages = "vim"\n')))
    assert "debian.architecture" in error.message
    assert "rootfs.packages" in error.message


def test_invalid_toml_names_the_file(write_profile: WriteProfile) -> None:
    path = write_profile('[debian\nsuite = "bookworm"\n')
    error = refused(str(path))
    assert str(path) in error.message
    assert "not valid TOML" in error.message
    assert "line 1" in error.message


def test_mirror_must_be_a_url_and_loses_its_trailing_slash(write_profile: WriteProfile) -> None:
    error = refused(str(write_profile('[debian]\nmirror = "ftp.debian.org/debian"\n')))
    assert "debian.mirror" in error.message
    profile = load_profile(str(write_profile('[debian]\nmirror = "https://mirror.example/debian/"\n')))
    assert profile.debian.mirror == "https://mirror.example/debian"


def test_attrs_keys_must_be_absolute(write_profile: WriteProfile) -> None:
    error = refused(str(write_profile('[rootfs.attrs."etc/motd"]\nmode = "0600"\n')))
    assert "rootfs.attrs" in error.message
    assert "'etc/motd'" in error.message


# --- snapshots ------------------------------------------------------------------------------------

@pytest.mark.parametrize("snapshot", ["2025-05-20", "20250520", "20250520T000000", "20251340T000000Z"])
def test_malformed_snapshot_is_refused(write_profile: WriteProfile, snapshot: str) -> None:
    error = refused(str(write_profile(f'[debian]\nsnapshot = "{snapshot}"\n')))
    assert "debian.snapshot" in error.message
    assert "YYYYMMDDTHHMMSSZ" in error.message


def test_snapshot_in_the_future_is_refused(write_profile: WriteProfile) -> None:
    future = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y%m%dT%H%M%SZ")
    error = refused(str(write_profile(f'[debian]\nsnapshot = "{future}"\n')))
    assert "debian.snapshot" in error.message
    assert "in the future" in error.message
    assert future in error.message


def test_past_snapshot_is_accepted(write_profile: WriteProfile) -> None:
    profile = load_profile(str(write_profile('[debian]\nsnapshot = "20250520T000000Z"\n')))
    assert profile.debian.snapshot == "20250520T000000Z"


# --- finding profiles -----------------------------------------------------------------------------

def test_unknown_profile_name_lists_the_available_ones(fake_home: Path) -> None:
    for name in ("beta", "alpha"):
        (fake_home / "profiles" / f"{name}.toml").write_text("[rootfs]\noverlays = []\n[initramfs]\noverlays = []\n")
    assert available_profiles() == ["alpha", "beta"]
    error = refused("nosuch")
    assert "'nosuch'" in error.message
    assert "available profiles: alpha, beta" in error.hint
    assert load_profile("alpha").name == "alpha"


def test_unknown_profile_name_with_no_profiles_says_none(fake_home: Path) -> None:
    error = refused("nosuch")
    assert "available profiles: (none)" in error.hint


def test_missing_profile_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    error = refused(str(missing))
    assert str(missing) in error.message
    assert "does not exist" in error.message


# --- references to other files ----------------------------------------------------------------------

def test_missing_overlay_is_refused_naming_the_key(write_profile: WriteProfile) -> None:
    path = write_profile('[rootfs]\noverlays = ["rootfs-base", "no-such-overlay"]\n')
    error = refused(str(path))
    assert str(path) in error.message
    assert "rootfs.overlays" in error.message
    assert "'no-such-overlay'" in error.message


def test_overlay_next_to_the_profile_wins_over_the_project_one(
    tmp_path: Path, write_profile: WriteProfile
) -> None:
    path = write_profile('[rootfs]\noverlays = ["rootfs-base", "mine"]\n')
    (tmp_path / "mine").mkdir()
    profile = load_profile(str(path))
    assert overlay_dir(profile, "mine") == (tmp_path / "mine").resolve()
    assert overlay_dir(profile, "rootfs-base") == (ROOT / "overlays" / "rootfs-base").resolve()
    (tmp_path / "rootfs-base").mkdir()
    assert overlay_dir(profile, "rootfs-base") == (tmp_path / "rootfs-base").resolve()


def test_missing_check_file_is_refused(tmp_path: Path, write_profile: WriteProfile) -> None:
    path = write_profile('[checks]\npaths = ["checks/test_mine.py"]\n')
    error = refused(str(path))
    assert "checks.paths" in error.message
    assert "'checks/test_mine.py'" in error.message
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "test_mine.py").write_text("")
    assert load_profile(str(path)).checks.paths == ["checks/test_mine.py"]


def test_every_shipped_profile_is_valid() -> None:
    names = available_profiles()
    assert names, "profiles/ ships no profile"
    for name in names:
        profile = load_profile(name)
        assert profile.source == ROOT / "profiles" / f"{name}.toml"
        plan_overlays(profile)  # attrs name real overlay paths
