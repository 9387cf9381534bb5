"""The diskless client's configuration: NFSROOT required, templates filled from the profile, exports."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from tests.support.nfsserver import exports_from_published

from bootkiln.errors import InputError
from bootkiln.pipeline import preflight
from bootkiln.profile.loader import load_profile
from bootkiln.stages.initramfs import nfsroot_settings
from bootkiln.stages.nfsroot import excluded, ganesha_exports, kernel_exports, render_overlay


def rendered(profile_ref: str) -> dict[str, str]:
    with tarfile.open(fileobj=io.BytesIO(render_overlay(load_profile(profile_ref), 1700000000))) as archive:
        return {member.name: archive.extractfile(member).read().decode()  # type: ignore[union-attr]
                for member in archive.getmembers() if member.isfile()}


def test_a_diskless_profile_without_nfsroot_is_refused_before_the_build(tmp_path: Path) -> None:
    profile = tmp_path / "client.toml"
    profile.write_text('[initramfs]\nstage = "nfs"\n')
    with pytest.raises(InputError) as caught:
        preflight(load_profile(str(profile)))
    assert "nfsroot.nfsroot" in caught.value.message and "NFSROOT" in caught.value.message


def test_nfsroot_must_look_like_server_and_path(tmp_path: Path) -> None:
    profile = tmp_path / "client.toml"
    profile.write_text('[nfsroot]\nnfsroot = "just-a-host"\n')
    with pytest.raises(InputError, match=r"nfsroot\.nfsroot"):
        load_profile(str(profile))


def test_nfs_client_templates_are_filled_from_the_profile() -> None:
    files = rendered("diskless")
    fstab = files["etc/fstab"]
    assert "10.0.2.2:/srv/bootkiln/diskless/usr\t/usr\tnfs\tro,vers=3,noacl" in fstab
    assert "10.0.2.2:/srv/bootkiln/diskless/home\t/home\tnfs\tro," in fstab
    assert "tmpfs\t/var\ttmpfs" in fstab and "tmpfs\t/tmp\ttmpfs" in fstab
    assert files["etc/rsyslog.d/90-bootkiln-remote.conf"].strip().endswith("*.* @10.0.2.2:514")
    assert not any(name.endswith(".in") for name in files)


def test_the_live_variant_differs_only_where_it_must() -> None:
    files = rendered("diskless-live")
    assert " nfs" not in files["etc/fstab"].replace("\t", " ").split("\n", 3)[-1]
    assert "tmpfs\t/var\ttmpfs" in files["etc/fstab"]
    live, nfs = load_profile("diskless-live"), load_profile("diskless")
    assert "/usr/*" not in excluded(live.nfsroot) and "/usr/*" in excluded(nfs.nfsroot)
    differences = {key for key in nfs.resolved() if nfs.resolved()[key] != live.resolved()[key]}
    assert differences == {"name", "description", "initramfs", "nfsroot", "iso"}


def test_server_export_definitions() -> None:
    settings = load_profile("diskless").nfsroot
    ganesha = ganesha_exports(settings)
    assert ganesha.count("EXPORT {") == 3 and "Squash = No_Root_Squash;" in ganesha
    assert "Path = /srv/bootkiln/diskless/root;" in ganesha and "Access_Type = RO;" in ganesha
    assert kernel_exports(settings).splitlines()[1].startswith("/srv/bootkiln/diskless/usr\t*(ro,")


def test_initramfs_gets_nfsroot_and_device() -> None:
    text = nfsroot_settings(load_profile("diskless"))
    assert "NFSROOT=10.0.2.2:/srv/bootkiln/diskless/root\n" in text and "DEVICE=eth0\n" in text
    assert nfsroot_settings(load_profile(None)) == "NFSROOT=\n"


def test_the_test_server_reads_back_the_published_exports(tmp_path: Path) -> None:
    settings = load_profile("diskless").nfsroot
    roots = {path: tmp_path / name for path, name in (("/srv/bootkiln/diskless/root", "root"),
                                                      ("/srv/bootkiln/diskless/usr", "usr"),
                                                      ("/srv/bootkiln/diskless/home", "home"))}
    exports = exports_from_published(ganesha_exports(settings), roots)
    assert [(e.export_id, e.path, e.pseudo, e.read_only, e.root_squash) for e in exports] == [
        (1, tmp_path / "root", "/srv/bootkiln/diskless/root", True, False),
        (2, tmp_path / "usr", "/srv/bootkiln/diskless/usr", True, False),
        (3, tmp_path / "home", "/srv/bootkiln/diskless/home", True, False)]
    with pytest.raises(ValueError, match="has no local folder"):
        exports_from_published(ganesha_exports(settings), {})
