"""Unit tier fixtures: no Docker, no network, no root; everything lives in tmp_path."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import tests.support.properties  # noqa: F401  (registers and loads the hypothesis profiles)
from tests.conftest import component_missing

WriteProfile = Callable[[str], Path]
# The installer's user-data reader, and the busybox applets it may use (and nothing else).
USERDATA_READER = Path(__file__).resolve().parents[2] / "overlays" / "initramfs-base" / "lib" / "bootkiln" / \
    "userdata-read.sh"
READER_APPLETS = ("sh", "awk", "gzip", "head", "od", "tr", "wc", "mkdir", "rm")


@pytest.fixture(scope="session")
def busybox_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PATH of busybox applets only: no GNU awk or gzip can stand in for busybox's."""
    busybox = shutil.which("busybox")
    if busybox is None:
        component_missing("busybox", "the host has no busybox binary (apt-get install busybox)")
    folder = tmp_path_factory.mktemp("busybox-bin")
    for applet in READER_APPLETS:
        (folder / applet).symlink_to(busybox)
    return folder


@pytest.fixture(autouse=True)
def checkout_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests see this checkout, whatever BOOTKILN_HOME the caller's shell has."""
    monkeypatch.delenv("BOOTKILN_HOME", raising=False)


@pytest.fixture(autouse=True)
def private_pki(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Generated CAs and keys go to a folder of the test's own, never to the checkout's .cache/pki."""
    folder = tmp_path_factory.mktemp("pki")
    monkeypatch.setenv("BOOTKILN_PKI", str(folder))
    return folder


@pytest.fixture
def write_profile(tmp_path: Path) -> WriteProfile:
    """Write TOML text to tmp_path/profile.toml and return the file's resolved path."""

    def write(text: str) -> Path:
        path = tmp_path / "profile.toml"
        path.write_text(text, encoding="utf-8")
        return path.resolve()

    return write


@pytest.fixture
def fake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in checkout (BOOTKILN_HOME) whose profiles/ and overlays/ the test controls."""
    home = tmp_path / "home"
    for folder in ("scripts", "docker", "profiles", "overlays", "configs"):
        (home / folder).mkdir(parents=True)
    real_configs = Path(__file__).resolve().parents[2] / "configs"
    shutil.copyfile(real_configs / "busybox.config", home / "configs" / "busybox.config")
    monkeypatch.setenv("BOOTKILN_HOME", str(home))
    return home

