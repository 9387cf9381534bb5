"""Lists from the profile reach the builder container as files, never as environment variables.

A 200,000-package list in BK_PACKAGES made the container's exec fail with "argument list too long"
(exit 3). The lists are uploaded as /bootkiln/<name>.txt, one name a line, whatever their length.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bootkiln.core.archive import ArchiveState
from bootkiln.core.runner import Builder
from bootkiln.profile.schema import Profile
from bootkiln.stages.busybox import BusyboxStage
from bootkiln.stages.kernel import KernelStage
from bootkiln.stages.rootfs import RootfsStage

MANY = 200_000
# Linux refuses to exec with any one argument or environment string over 128 KiB.
MAX_ARG_STRLEN = 128 * 1024
ARCHIVE = ArchiveState(mirror="http://deb.debian.org/debian", suite="bookworm", snapshot=None, release_sha256="0" * 64,
                       release_epoch=1_700_000_000, source_date_epoch=1_700_000_000)


class Stop(Exception):
    """Ends a stage's build at its first container command: what it would run is all we look at."""


@dataclass
class RecordingRunner:
    started: list[Builder] = field(default_factory=list)

    @property
    def engine(self) -> RecordingRunner:
        return self

    @contextmanager
    def volume(self, name: str) -> Iterator[str]:
        yield f"test-{name}"

    def run(self, argv: list[str], *, stage: str, where: Builder, **_: Any) -> list[str]:
        self.started.append(where)
        raise Stop


@dataclass
class Context:
    profile: Profile
    archive: ArchiveState = ARCHIVE
    runner: RecordingRunner = field(default_factory=RecordingRunner)

    @property
    def builder(self) -> Any:
        return type("BuilderImage", (), {"tag": "bootkiln-builder:test", "image_id": "sha256:test",
                                         "architecture": "amd64"})()


def uploaded_files(builder: Builder) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for upload in builder.uploads:
        assert isinstance(upload.archive, bytes)
        with tarfile.open(fileobj=io.BytesIO(upload.archive)) as archive:
            for member in archive.getmembers():
                handle = archive.extractfile(member)
                if handle is not None:
                    files[member.name] = handle.read()
    return files


def assert_execable(builder: Builder) -> None:
    for name, value in builder.env.items():
        assert len(f"{name}={value}") < MAX_ARG_STRLEN, f"{name} is too long for exec"


def started(stage: Any, ctx: Context, tmp_path: Path) -> Builder:
    with pytest.raises(Stop):
        stage.build(ctx, {}, tmp_path)
    return ctx.runner.started[0]


def test_a_long_package_list_is_uploaded_as_a_file(tmp_path: Path) -> None:
    packages = [f"package-number-{i}" for i in range(MANY)]
    ctx = Context(Profile.model_validate({"rootfs": {"packages": packages}}))
    builder = started(RootfsStage(), ctx, tmp_path)
    assert_execable(builder)
    assert not any("package-number-1" in value for value in builder.env.values())
    assert uploaded_files(builder)["bootkiln/packages.txt"].decode().splitlines() == packages


def test_no_packages_is_an_empty_file(tmp_path: Path) -> None:
    builder = started(RootfsStage(), Context(Profile()), tmp_path)
    assert uploaded_files(builder)["bootkiln/packages.txt"] == b""


def test_long_module_lists_are_uploaded_as_files(tmp_path: Path) -> None:
    modules = [f"module_{i}" for i in range(MANY)]
    ctx = Context(Profile.model_validate({"kernel": {"modules": modules},
                                          "installer": {"target_modules": modules[:3]}}))
    builder = started(KernelStage(), ctx, tmp_path)
    assert_execable(builder)
    files = uploaded_files(builder)
    # efivarfs is always added: the initramfs reads the SecureBoot variable through it.
    assert files["bootkiln/modules.txt"].decode().splitlines() == [*modules, "efivarfs"]
    assert files["bootkiln/target-modules.txt"] == b"module_0\nmodule_1\nmodule_2\n"


def test_a_long_applet_list_stays_out_of_the_environment(tmp_path: Path) -> None:
    ctx = Context(Profile.model_validate({"busybox": {"applets": ["sh"] * MANY}}))
    builder = started(BusyboxStage(), ctx, tmp_path)
    assert_execable(builder)
