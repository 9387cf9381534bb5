"""Checks that run before any container: busybox applets, boot tools on the host, new profile tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootkiln.errors import EnvironmentProblem, InputError
from bootkiln.pipeline import preflight
from bootkiln.profile.loader import load_profile
from bootkiln.stages.busybox import applet_symbols, missing_applets
from bootkiln.verify import qemu

ROOT = Path(__file__).resolve().parents[2]


def test_applet_symbols_follow_busybox_names() -> None:
    assert applet_symbols("switch_root") == ("SWITCH_ROOT",)
    assert applet_symbols("mkfs.vfat") == ("MKDOSFS",)
    assert "SH_IS_ASH" in applet_symbols("sh")


def test_repo_config_has_every_default_applet() -> None:
    profile = load_profile(None)
    assert missing_applets((ROOT / "configs" / "busybox.config").read_text(), profile.busybox.applets) == []


def test_a_missing_applet_is_named_before_any_build(tmp_path: Path) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text('[busybox]\napplets = ["sh", "sfdisk", "lvm"]\n')
    with pytest.raises(InputError) as caught:
        preflight(load_profile(str(profile)))
    assert "sfdisk, lvm" in caught.value.message and "busybox" in caught.value.message


def test_a_config_without_static_is_refused(tmp_path: Path) -> None:
    config = (ROOT / "configs" / "busybox.config").read_text().replace("CONFIG_STATIC=y", "# CONFIG_STATIC is not set")
    (tmp_path / "dynamic.config").write_text(config)
    profile = tmp_path / "p.toml"
    profile.write_text('[busybox]\nconfig = "dynamic.config"\n')
    with pytest.raises(InputError, match="CONFIG_STATIC"):
        preflight(load_profile(str(profile)))


def test_an_unknown_initramfs_stage_is_refused(tmp_path: Path) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text('[initramfs]\nstage = "nosuch"\n')
    with pytest.raises(InputError, match=r"initramfs\.stage"):
        preflight(load_profile(str(profile)))


@pytest.mark.parametrize(("text", "key"), [
    ('[iso]\nlabel = "lower case"\n', "iso.label"),
    ('[iso]\nmax_size = "twelve"\n', "iso.max_size"),
    ('[initramfs]\ncompression = "bzip2"\n', "initramfs.compression"),
    ('[kernel]\nmodules = ["bad name"]\n', "kernel.modules.0"),
    ('[kernel]\napt_source = "http://x bookworm"\n', "kernel.apt_source"),
    ('[boot]\nmodes = ["bios-floppy"]\n', "boot.modes.0"),
])
def test_new_tables_are_validated(tmp_path: Path, text: str, key: str) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text(text)
    with pytest.raises(InputError) as caught:
        load_profile(str(profile))
    assert f"key '{key}'" in caught.value.message


def test_missing_qemu_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bootkiln.verify.qemu.shutil.which", lambda name: None)
    with pytest.raises(EnvironmentProblem) as caught:
        qemu.qemu_binary()
    assert "qemu-system-x86" in caught.value.hint


def test_missing_ovmf_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(qemu, "OVMF_CANDIDATES", [(str(tmp_path / "CODE.fd"), str(tmp_path / "VARS.fd"))])
    with pytest.raises(EnvironmentProblem) as caught:
        qemu.find_ovmf()
    assert "apt-get install ovmf" in caught.value.hint


def test_qemu_command_lines_per_mode(tmp_path: Path) -> None:
    firmware = qemu.Firmware(tmp_path / "CODE.fd", tmp_path / "VARS.fd")
    cd = qemu.qemu_argv("bios-cd", tmp_path / "x.iso", accel="tcg", memory=512)
    assert any("media=cdrom" in arg for arg in cd) and not any("pflash" in arg for arg in cd)
    usb = qemu.qemu_argv("uefi-usb", tmp_path / "x.iso", accel="tcg", memory=512, firmware=firmware,
                         vars_copy=tmp_path / "v.fd")
    assert "usb-storage,bus=xhci.0,drive=stick,bootindex=1" in usb
    assert sum("if=pflash" in arg for arg in usb) == 2
    assert usb[usb.index("-accel") + 1] == "tcg"


def test_forced_accelerator_skips_the_probe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BOOTKILN_ACCEL", "tcg")
    assert qemu.choose_accel(None, tmp_path / "vmlinuz") == "tcg"  # type: ignore[arg-type]
