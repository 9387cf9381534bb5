"""The assembled builder image: its docker-archive and config are a function of the layer and the epoch."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from bootkiln.core.builder import (
    builder_packages,
    image_config,
    requested_architecture,
    write_docker_archive,
)
from bootkiln.errors import InputError


def test_archive_and_image_id_depend_only_on_layer_and_epoch(tmp_path: Path) -> None:
    layer = tmp_path / "rootfs.tar"
    layer.write_bytes(b"layer bytes" * 1000)
    first = write_docker_archive(layer, tmp_path / "a.tar", "bootkiln-builder:x", 1700000000)
    second = write_docker_archive(layer, tmp_path / "b.tar", "bootkiln-builder:x", 1700000000)
    assert first == second and (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert write_docker_archive(layer, tmp_path / "c.tar", "bootkiln-builder:x", 1700000001) != first
    with tarfile.open(tmp_path / "a.tar") as archive:
        manifest = json.loads(archive.extractfile("manifest.json").read())  # type: ignore[union-attr]
        config = archive.extractfile(manifest[0]["Config"]).read()  # type: ignore[union-attr]
    assert first == "sha256:" + hashlib.sha256(config).hexdigest()
    assert json.loads(config)["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer.read_bytes()).hexdigest()]
    assert manifest[0]["RepoTags"] == ["bootkiln-builder:x"]


def test_config_carries_the_archive_time_not_the_clock() -> None:
    config = json.loads(image_config("00" * 32, 1783764997))
    assert config["created"] == "2026-07-11T10:16:37Z"


def test_package_list_has_what_every_stage_runs() -> None:
    assert {"mmdebstrap", "kmod", "musl-tools", "grub-efi-amd64-bin", "isolinux", "mtools"} <= set(builder_packages())


def test_each_builder_architecture_gets_only_the_packages_debian_has_for_it() -> None:
    amd64, arm64 = set(builder_packages("amd64")), set(builder_packages("arm64"))
    assert {"grub-efi-amd64-bin", "grub-pc-bin", "gcc-aarch64-linux-gnu"} <= amd64
    assert not {"grub-efi-amd64-bin", "grub-efi-amd64-signed", "grub-pc-bin", "gcc-aarch64-linux-gnu"} & arm64
    assert {"mmdebstrap", "gcc", "grub-common", "mtools", "qemu-user-static"} <= arm64 & amd64
    # busybox: each builder cross-compiles for the other architecture (the native gcc serves its own).
    assert "gcc-x86-64-linux-gnu" in arm64 - amd64


def test_a_malformed_qualifier_names_the_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "builder-packages.txt").write_text("gcc\n# note\nmusl-tools amd64\n")
    monkeypatch.setattr("bootkiln.core.builder.project_root", lambda: tmp_path)
    with pytest.raises(InputError, match=r"builder-packages.txt:3: 'musl-tools amd64'"):
        builder_packages("amd64")


def test_an_assembled_builder_config_names_its_architecture() -> None:
    assert json.loads(image_config("00" * 32, 1783764997, "arm64"))["architecture"] == "arm64"


@pytest.mark.parametrize(("value", "expected"), [("", None), ("arm64", "arm64"), (" amd64 ", "amd64")])
def test_the_requested_builder_architecture(value: str, expected: str | None) -> None:
    assert requested_architecture({"BOOTKILN_BUILDER_ARCH": value}) == expected


def test_an_unsupported_builder_architecture_is_refused_with_the_choices() -> None:
    with pytest.raises(InputError, match="BOOTKILN_BUILDER_ARCH='riscv64'") as caught:
        requested_architecture({"BOOTKILN_BUILDER_ARCH": "riscv64"})
    assert "amd64, arm64" in caught.value.hint


