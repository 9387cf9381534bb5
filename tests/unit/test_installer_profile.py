"""The installer profile's settings: checked before anything runs, and what the initramfs carries."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootkiln.errors import InputError
from bootkiln.pipeline import STAGES, Build, preflight
from bootkiln.profile.loader import load_profile
from bootkiln.profile.schema import carries_payload, is_installer
from bootkiln.stages.initramfs import installer_settings

INSTALLER = Path(__file__).resolve().parents[2] / "profiles" / "installer.toml"


def variant(tmp_path: Path, old: str, new: str) -> Path:
    text = INSTALLER.read_text()
    assert old in text
    path = tmp_path / "variant.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_the_installer_profile_passes_preflight_and_carries_its_payload() -> None:
    profile = load_profile("installer")
    preflight(profile)
    assert is_installer(profile) and carries_payload(profile)
    assert STAGES["iso"]().requires_for(profile)[-1] == "payload"
    assert STAGES["disk"]().requires_for(profile) == ("kernel", "initramfs", "payload", "bootloader")
    assert STAGES["initramfs"]().requires_for(profile)[-1] == "online-tools"
    assert "target-modules.tar" in STAGES["kernel"]().outputs_for(profile)


def test_without_payload_the_images_need_no_rootfs(tmp_path: Path) -> None:
    profile = load_profile(str(variant(tmp_path, "[installer]\n", "[installer]\npayload = false\n")))
    preflight(profile)
    assert "payload" not in STAGES["iso"]().requires_for(profile)
    assert STAGES["disk"]().requires_for(profile) == ("kernel", "initramfs", "bootloader")


def test_an_installer_disk_layout_needs_the_installer_stage(tmp_path: Path) -> None:
    profile = load_profile(str(variant(tmp_path, 'stage = "installer"', 'stage = "rescue"')))
    with pytest.raises(InputError, match=r"key 'disk\.layout': 'installer' needs initramfs\.stage"):
        preflight(profile)


def test_an_offline_payload_without_target_modules_is_refused(tmp_path: Path) -> None:
    text = INSTALLER.read_text()
    start = text.index("target_modules = [")
    end = text.index("]\n", start) + 2
    path = tmp_path / "no-modules.toml"
    path.write_text(text[:start] + text[end:])
    with pytest.raises(InputError, match=r"key 'installer\.target_modules': empty"):
        preflight(load_profile(str(path)))


@pytest.mark.parametrize(("arch", "old", "new", "message"), [
    ("amd64", '"grub-pc-bin", ', "", "on amd64 runs grub-install from this rootfs; it lacks grub-pc-bin"),
    ("arm64", '"grub-efi-arm64-bin"', '"grub-pc-bin", "grub-efi-amd64-bin"',
     "it lists grub-efi-amd64-bin, grub-pc-bin, which arm64 has no use for"),
    ("arm64", '"grub-efi-arm64-bin", ', "", "it lacks grub-efi-arm64-bin"),
])
def test_an_offline_payload_needs_the_targets_grub(tmp_path: Path, arch: str, old: str, new: str,
                                                    message: str) -> None:
    """An amd64 GRUB list copied into an arm64 installer (or none) is refused before any container starts."""
    source = INSTALLER if arch == "amd64" else INSTALLER.with_name("installer-arm64.toml")
    text = source.read_text()
    assert old in text
    path = tmp_path / "grub.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(InputError, match=r"key 'rootfs\.packages'") as caught:
        preflight(load_profile(str(path)))
    assert message in caught.value.message


def test_the_arm64_installer_profile_passes_preflight() -> None:
    profile = load_profile("installer-arm64")
    preflight(profile)
    assert profile.debian.architecture == "arm64" and carries_payload(profile)
    assert "ttyAMA0" in profile.iso.cmdline


def test_installer_settings_are_plain_assignments_with_an_http_mirror() -> None:
    profile = load_profile("installer")
    settings = installer_settings(profile, "https://snapshot.debian.org/archive/debian/20250101T000000Z")
    values = dict(line.split("=", 1) for line in settings.splitlines())
    assert values["MIRROR"] == "http://snapshot.debian.org/archive/debian/20250101T000000Z"
    assert values["BOOT_MIB"] == "256" and values["ESP_MIB"] == "64"
    assert values["KERNEL_PACKAGE"] == "linux-image-amd64" and values["SUITE"] == "bookworm"
    assert "lvm2" in values["PACKAGES"].split(",")
    # Sourced by sh: nothing a shell would expand or split.
    assert all(not set(value) & set(" $`\"'\\;&|<>(){}") for value in values.values())


def test_build_accepts_the_installer_profile_without_an_engine() -> None:
    build = Build(load_profile("installer"))
    assert build.profile.disk.layout == "installer" and int(build.profile.disk.size) == 128 << 20


def test_the_room_check_counts_only_what_goes_to_the_third_partition(tmp_path: Path) -> None:
    """GRUB's modules and a UKI go to the ESP: a full-sized grub-modules.tar must not fail a disk that fits."""
    from types import SimpleNamespace
    from typing import Any, cast

    from bootkiln.stages.base import StageResult
    from bootkiln.stages.disk import DiskStage

    profile = load_profile("installer")
    mib = 1 << 20
    sizes = {"kernel": {"vmlinuz": 8 * mib}, "initramfs": {"initrd.img": 20 * mib},
             "payload": {"rootfs.tar.xz": 48 * mib, "target-modules.tar.xz": 4 * mib, "payload.txt": 1},
             "bootloader": {"grub-modules.tar": 30 * mib}}
    inputs = {}
    for stage, files in sizes.items():
        (tmp_path / stage).mkdir()
        for name, size in files.items():
            with (tmp_path / stage / name).open("wb") as handle:
                handle.truncate(size)
        inputs[stage] = StageResult(stage, "k", tmp_path / stage, False, {})
    ctx = cast(Any, SimpleNamespace(profile=profile))
    DiskStage().check_room(ctx, inputs)  # 80 MiB into the 92 MiB third partition of 128 MiB: fits
    (tmp_path / "payload" / "rootfs.tar.xz").unlink()
    with (tmp_path / "payload" / "rootfs.tar.xz").open("wb") as handle:
        handle.truncate(90 * mib)
    with pytest.raises(InputError, match=r"key 'disk\.size'"):
        DiskStage().check_room(ctx, inputs)
