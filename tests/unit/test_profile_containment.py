"""A profile never pulls host files into an image: every file it names lies inside its folder or the project's.

Overlays (rootfs, initramfs, nfsroot), the busybox config, the kernel .deb and the check files must
resolve inside the profile's folder or the project folder for that kind of file. An absolute name, a
`..` that climbs out, or a folder that is a symlink to elsewhere is refused by loading the profile
(so by `check-profile` and by every build, before any container), naming the key and the path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bootkiln.core.overlay import overlay_archive, plan_overlays
from bootkiln.errors import Fault, InputError
from bootkiln.profile.loader import load_profile


@pytest.fixture
def host_folder(tmp_path: Path) -> Path:
    """A folder outside the profile's, standing for the host's files (/root, /etc, a home)."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret.txt").write_text("host secret\n")
    return host


@pytest.fixture
def profile_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "profiles" / "mine"
    folder.mkdir(parents=True)
    return folder


def refused(profile_dir: Path, body: str) -> InputError:
    path = profile_dir / "profile.toml"
    path.write_text(body)
    with pytest.raises(InputError) as caught:
        load_profile(str(path))
    assert caught.value.fault is Fault.INPUT
    assert str(path) in caught.value.message
    return caught.value


@pytest.mark.parametrize("key", ["rootfs", "initramfs", "nfsroot"])
def test_an_absolute_overlay_name_is_refused(profile_dir: Path, host_folder: Path, key: str) -> None:
    error = refused(profile_dir, f'[{key}]\noverlays = ["{host_folder}"]\n')
    assert f"{key}.overlays" in error.message
    assert str(host_folder) in error.message
    assert "absolute" in error.message


def test_an_overlay_named_root_is_refused_before_walking_it(profile_dir: Path) -> None:
    error = refused(profile_dir, '[rootfs]\noverlays = ["/root"]\n')
    assert "rootfs.overlays" in error.message
    assert "'/root'" in error.message


def test_a_dotdot_escape_is_refused(profile_dir: Path, host_folder: Path) -> None:
    error = refused(profile_dir, '[rootfs]\noverlays = ["../../host"]\n')
    assert "rootfs.overlays" in error.message
    assert "'../../host'" in error.message
    assert str(host_folder.resolve()) in error.message


def test_an_overlay_folder_that_is_a_symlink_to_a_host_folder_is_refused(profile_dir: Path,
                                                                          host_folder: Path) -> None:
    (profile_dir / "sneaky").symlink_to(host_folder)
    error = refused(profile_dir, '[initramfs]\noverlays = ["initramfs-base", "sneaky"]\n')
    assert "initramfs.overlays" in error.message
    assert "'sneaky'" in error.message
    assert str(host_folder.resolve()) in error.message


def test_a_folder_on_the_way_that_is_a_symlink_out_is_refused(profile_dir: Path, host_folder: Path) -> None:
    (host_folder / "etc").mkdir()
    (profile_dir / "via").symlink_to(host_folder)
    error = refused(profile_dir, '[rootfs]\noverlays = ["via/etc"]\n')
    assert "rootfs.overlays" in error.message


def test_the_profile_folder_itself_is_not_an_overlay(profile_dir: Path) -> None:
    error = refused(profile_dir, '[rootfs]\noverlays = ["."]\n')
    assert "rootfs.overlays" in error.message


def test_a_symlink_inside_an_overlay_stays_a_link(profile_dir: Path, host_folder: Path) -> None:
    overlay = profile_dir / "mine"
    (overlay / "etc").mkdir(parents=True)
    (overlay / "etc" / "secret").symlink_to(host_folder / "secret.txt")
    (overlay / "etc" / "hostdir").symlink_to(host_folder)
    path = profile_dir / "profile.toml"
    path.write_text('[rootfs]\noverlays = ["mine"]\n')
    entries = {entry.path: entry for entry in plan_overlays(load_profile(str(path)))}
    assert entries["/etc/secret"].kind == "link"
    assert entries["/etc/secret"].target == str(host_folder / "secret.txt")
    assert entries["/etc/hostdir"].kind == "link"
    assert "/etc/hostdir/secret.txt" not in entries
    assert b"host secret" not in overlay_archive(list(entries.values()), 0)


def test_an_overlay_symlinked_within_the_profile_folder_is_accepted(profile_dir: Path) -> None:
    (profile_dir / "real" / "etc").mkdir(parents=True)
    (profile_dir / "alias").symlink_to(profile_dir / "real")
    path = profile_dir / "profile.toml"
    path.write_text('[rootfs]\noverlays = ["alias"]\n')
    assert [e.path for e in plan_overlays(load_profile(str(path)))] == ["/etc"]


def test_a_relative_path_into_the_project_overlays_is_accepted(tmp_path: Path) -> None:
    project_profiles = Path(__file__).resolve().parents[2] / "profiles"
    profile = load_profile(str(project_profiles / "rescue.toml"))
    # the project overlays reached through ../overlays from profiles/ are inside the project's overlays/
    assert plan_overlays(profile.model_copy(update={"rootfs": profile.rootfs.model_copy(
        update={"overlays": ["../overlays/rootfs-base"]})}))


def test_a_busybox_config_outside_is_refused(profile_dir: Path, host_folder: Path) -> None:
    error = refused(profile_dir, f'[busybox]\nconfig = "{host_folder}/secret.txt"\n')
    assert "busybox.config" in error.message
    (profile_dir / "cfg").symlink_to(host_folder / "secret.txt")
    error = refused(profile_dir, '[busybox]\nconfig = "cfg"\n')
    assert "busybox.config" in error.message
    assert str((host_folder / "secret.txt").resolve()) in error.message


def test_a_kernel_deb_outside_is_refused(profile_dir: Path, host_folder: Path) -> None:
    error = refused(profile_dir, '[kernel]\ndeb = "../../host/secret.txt"\n')
    assert "kernel.deb" in error.message
    assert "outside" in error.message


def test_check_paths_outside_the_profile_folder_are_refused(profile_dir: Path, host_folder: Path) -> None:
    (host_folder / "test_host.py").write_text("")
    error = refused(profile_dir, f'[checks]\npaths = ["{host_folder}/test_host.py"]\n')
    assert "checks.paths" in error.message
    error = refused(profile_dir, '[checks]\npaths = ["../../host/test_host.py"]\n')
    assert "checks.paths" in error.message
    assert "outside" in error.message
