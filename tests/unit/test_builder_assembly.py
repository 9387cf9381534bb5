"""The assembled builder image: its docker-archive and config are a function of the layer and the epoch."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

from bootkiln.core.builder import builder_packages, image_config, write_docker_archive


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
