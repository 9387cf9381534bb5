"""Session fixtures shared by the Docker and VM tiers: one engine, one build of the default profile.

The default profile's rootfs and ISO are each built once per session, from an empty cache, and
every test that needs them reuses that build.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bootkiln.console import Reporter
from bootkiln.core.engine import Engine, connect
from bootkiln.core.runner import Builder, Host, Runner
from bootkiln.errors import EnvironmentProblem
from bootkiln.paths import Workspace
from bootkiln.pipeline import Build
from bootkiln.profile.loader import load_profile
from bootkiln.stages.base import StageResult
from tests.conftest import component_missing

ROOT = Path(__file__).resolve().parents[1]


class RecordingRunner(Runner):
    """A runner that notes each container step as 'last-argument:network'."""

    def __init__(self, reporter: Reporter, engine: Engine) -> None:
        super().__init__(reporter, engine)
        self.container_steps: list[str] = []

    def run(self, argv: Sequence[str], *, stage: str, where: Host | Builder, hint: str = "",
            missing_hint: str = "") -> list[str]:
        if isinstance(where, Builder):
            self.container_steps.append(f"{stage}:{argv[-1]}:{where.network}")
        return super().run(argv, stage=stage, where=where, hint=hint, missing_hint=missing_hint)


@dataclass
class SessionBuild:
    build: Build
    workspace: Workspace
    runner: RecordingRunner
    _results: dict[str, StageResult] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {"BOOTKILN_CACHE": str(self.workspace.cache), "BOOTKILN_OUT": str(self.workspace.out)}

    def out(self) -> Path:
        return self.workspace.output_dir(self.build.profile.name)


@pytest.fixture(scope="session")
def engine() -> Engine:
    try:
        return connect(lambda message: None)
    except EnvironmentProblem as exc:
        component_missing("Docker engine", exc.message)


@pytest.fixture(scope="session")
def session_build(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> SessionBuild:
    base = tmp_path_factory.mktemp("primary")
    workspace = Workspace(cache=base / "cache", out=base / "out")
    build = Build(load_profile(None), workspace=workspace, reporter=Reporter())
    runner = RecordingRunner(build.reporter, engine)
    build.runner = runner
    return SessionBuild(build, workspace, runner)


@pytest.fixture(scope="session")
def default_rootfs(session_build: SessionBuild) -> StageResult:
    """The default profile's rootfs, built from an empty cache once for the whole session."""
    return session_build.build.rootfs()


@pytest.fixture(scope="session")
def default_iso(session_build: SessionBuild) -> StageResult:
    """The default profile's hybrid ISO, built from an empty cache once for the whole session."""
    return session_build.build.iso()


@pytest.fixture(scope="session")
def default_disk(session_build: SessionBuild) -> StageResult:
    """The default profile's raw disk image, built once for the whole session."""
    return session_build.build.disk()


@dataclass(frozen=True)
class Completed:
    returncode: int
    output: str


def invoke(args: list[str], *, env: Mapping[str, str] | None = None, timeout: float = 1800) -> Completed:
    """Run an Invoke task as a user would, from the checkout."""
    process = subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=ROOT, env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False,
    )
    return Completed(process.returncode, process.stdout)


@pytest.fixture
def isolated(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for a task run with its own cache and output folders."""
    yield {"BOOTKILN_CACHE": str(tmp_path / "cache"), "BOOTKILN_OUT": str(tmp_path / "out")}


def profile_build(session_build: SessionBuild, tmp_path_factory: pytest.TempPathFactory, profile: str,
                  folder: str) -> Build:
    """A build of another profile sharing the session's stage cache (busybox, kernel and boot files
    are reused), with outputs of its own."""
    workspace = Workspace(cache=session_build.workspace.cache, out=tmp_path_factory.mktemp(folder) / "out")
    return Build(load_profile(profile), workspace=workspace, reporter=Reporter())


@pytest.fixture(scope="session")
def arm64_build(session_build: SessionBuild, tmp_path_factory: pytest.TempPathFactory) -> Build:
    """The arm64 rescue profile with its UEFI-only ISO built on this host's builder (busybox
    cross-compiled), once for the session; it shares the session's stage cache."""
    build = profile_build(session_build, tmp_path_factory, "rescue-arm64", "arm64")
    build.iso()
    return build


@pytest.fixture(scope="session")
def arm64_disk(arm64_build: Build) -> StageResult:
    """The arm64 rescue profile's UEFI-only disk image: its rootfs is bootstrapped under qemu-user."""
    return arm64_build.disk()


@dataclass(frozen=True)
class DisklessBuild:
    build: Build
    nfsroot: StageResult
    rootfs: StageResult


def diskless_build(build: Build) -> DisklessBuild:
    """A diskless profile's NFS boot ISO and client tree."""
    build.iso()
    return DisklessBuild(build, build.produce("nfsroot"), build.stage("rootfs"))


@pytest.fixture(scope="session")
def diskless(session_build: SessionBuild, tmp_path_factory: pytest.TempPathFactory) -> DisklessBuild:
    """The diskless profile's client tree and NFS boot ISO, built once for the session (sharing the
    session's stage cache, so busybox and the boot files are reused)."""
    return diskless_build(profile_build(session_build, tmp_path_factory, "diskless", "diskless"))


@pytest.fixture(scope="session")
def diskless_live(session_build: SessionBuild, tmp_path_factory: pytest.TempPathFactory) -> StageResult:
    """The live variant's ISO (the client tree as squashfs), built once for the session."""
    return profile_build(session_build, tmp_path_factory, "diskless-live", "live").iso()


@pytest.fixture(scope="session")
def diskless_arm64(session_build: SessionBuild, tmp_path_factory: pytest.TempPathFactory) -> DisklessBuild:
    """The arm64 diskless client (profiles/diskless-arm64.toml): its tree bootstrapped under qemu-user
    and its UEFI-only NFS boot ISO, once for the session on the session's cache."""
    return diskless_build(profile_build(session_build, tmp_path_factory, "diskless-arm64", "diskless-arm64"))


@pytest.fixture(scope="session")
def diskless_live_arm64(session_build: SessionBuild, tmp_path_factory: pytest.TempPathFactory) -> StageResult:
    """The arm64 live ISO: the same client tree as diskless_arm64 (its rootfs comes from the cache)."""
    return profile_build(session_build, tmp_path_factory, "diskless-live-arm64", "live-arm64").iso()


def without_payload(profile: str, folder: Path) -> Path:
    """A copy of profiles/<profile>.toml with installer.payload = false: the online installer."""
    path = folder / f"{profile}-online.toml"
    path.write_text((ROOT / "profiles" / f"{profile}.toml").read_text().replace(
        "[installer]\n", "[installer]\npayload = false\n", 1))
    return path


@dataclass(frozen=True)
class InstallerBuild:
    build: Build
    iso: Path
    disk: Path


@pytest.fixture(scope="session")
def installer(session_build: SessionBuild, tmp_path_factory: pytest.TempPathFactory) -> InstallerBuild:
    """The installer profile's ISO and 128 MiB disk image (both with the offline payload), built once."""
    build = profile_build(session_build, tmp_path_factory, "installer", "installer")
    iso = build.iso().artifact("boot.iso")
    return InstallerBuild(build, iso, build.disk().artifact("disk.img"))


@pytest.fixture(scope="session")
def installer_arm64(session_build: SessionBuild, tmp_path_factory: pytest.TempPathFactory) -> InstallerBuild:
    """The arm64 installer (profiles/installer-arm64.toml): its UEFI-only ISO and 128 MiB disk image,
    both with the offline payload (an arm64 rootfs bootstrapped under qemu-user), built once."""
    build = profile_build(session_build, tmp_path_factory, "installer-arm64", "installer-arm64")
    iso = build.iso().artifact("boot.iso")
    return InstallerBuild(build, iso, build.disk().artifact("disk.img"))


OWN_KEY_PROFILE = """name = "ownkey"
description = "the default image; UEFI boots a Unified Kernel Image signed with a test key"

[secureboot]
key = "secureboot.key"
cert = "secureboot.crt"
"""


@dataclass(frozen=True)
class OwnKeyBuild:
    """A profile signing its UKI with a fresh test key, and the same profile signed with another key."""

    build: Build
    iso: Path
    folder: Path  # the profile, secureboot.key and secureboot.crt
    other_iso: Path  # the same image signed with a key whose certificate is enrolled nowhere
    other_folder: Path  # that other key's profile folder


def own_key_profile(folder: Path) -> Path:
    from bootkiln.profile.sbkeys import generate_test_pair

    generate_test_pair(folder)
    profile = folder / "ownkey.toml"
    profile.write_text(OWN_KEY_PROFILE)
    return profile


@pytest.fixture(scope="session")
def ownkey(session_build: SessionBuild, tmp_path_factory: pytest.TempPathFactory) -> OwnKeyBuild:
    """Both ISOs built once per session on the session's cache: the kernel and busybox are reused, and
    the unsigned UKI is built once and signed twice."""
    folder = tmp_path_factory.mktemp("ownkey-profile")
    build = profile_build(session_build, tmp_path_factory, str(own_key_profile(folder)), "ownkey")
    other_folder = tmp_path_factory.mktemp("otherkey-profile")
    other = profile_build(session_build, tmp_path_factory, str(own_key_profile(other_folder)), "otherkey")
    return OwnKeyBuild(build, build.iso().artifact("boot.iso"), folder, other.iso().artifact("boot.iso"), other_folder)
