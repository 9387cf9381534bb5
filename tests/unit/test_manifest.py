"""Manifests are sealed, refused when edited or foreign; two builds' outputs are compared and explained."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bootkiln import __version__
from bootkiln.console import Reporter
from bootkiln.core.manifest import load_manifest, merge, new_manifest
from bootkiln.errors import InputError
from bootkiln.profile.loader import load_profile
from bootkiln.verify.reproduce import CONDITIONS, compare_outputs, profile_from_manifest, rebuild

ARCHIVE = {"mirror": "http://deb.debian.org/debian", "suite": "bookworm", "snapshot": None,
           "release_sha256": "ab" * 32, "source_date_epoch": 1700000000}


def write_manifest(tmp_path: Path, **changes: object) -> Path:
    data = new_manifest(load_profile(None), ARCHIVE, {"tag": "t", "image_id": "sha256:x"},
                        {"iso": {"key": "k"}}, {"boot.iso": "cd" * 32})
    data.update(changes)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    return path


def test_a_sealed_manifest_loads_and_rebuilds_the_same_profile(tmp_path: Path) -> None:
    data = load_manifest(write_manifest(tmp_path))
    assert data["bootkiln"]["version"] == __version__
    assert {"scripts", "docker", "bootkiln", "busybox.config", "overlay:initramfs:initramfs-base"} <= set(
        data["inputs"])
    assert profile_from_manifest(data) == load_profile(None)


def test_an_edited_manifest_is_refused(tmp_path: Path) -> None:
    path = write_manifest(tmp_path)
    data = json.loads(path.read_text())
    data["artifacts"]["boot.iso"] = "00" * 32
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="edited"):
        load_manifest(path)


def test_a_manifest_from_another_version_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = write_manifest(tmp_path)
    data = json.loads(path.read_text())
    data["bootkiln"]["version"] = "0.0.1"
    from bootkiln.core.manifest import seal

    path.write_text(json.dumps(seal(data)))
    with pytest.raises(InputError) as caught:
        load_manifest(path)
    assert "bootkiln 0.0.1" in caught.value.message and __version__ in caught.value.message


def test_not_a_manifest_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="not a bootkiln manifest"):
        load_manifest(path)


def test_merge_keeps_earlier_stages_of_the_same_build_only() -> None:
    profile = load_profile(None)
    first = new_manifest(profile, ARCHIVE, {"image_id": "a"}, {"rootfs": {"key": "1"}}, {"rootfs.tar": "1"})
    second = new_manifest(profile, ARCHIVE, {"image_id": "a"}, {"iso": {"key": "2"}}, {"boot.iso": "2"})
    merged = merge(first, second)
    assert set(merged["stages"]) == {"rootfs", "iso"} and set(merged["artifacts"]) == {"rootfs.tar", "boot.iso"}
    moved = new_manifest(profile, {**ARCHIVE, "release_sha256": "ef" * 32}, {"image_id": "a"},
                         {"iso": {"key": "3"}}, {"boot.iso": "3"})
    assert set(merge(first, moved)["stages"]) == {"iso"}


def tar_with(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1700000000
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def publish(folder: Path, files: dict[str, bytes]) -> Path:
    import hashlib

    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "SHA256SUMS").write_text("".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in files.items()))
    return folder


def test_two_builds_that_differ_are_reported_with_where(tmp_path: Path) -> None:
    same = b"identical kernel bytes"
    first = publish(tmp_path / "a", {"vmlinuz": same, "rootfs.tar": tar_with({"etc/machine-id": b""})})
    second = publish(tmp_path / "b", {"vmlinuz": same, "rootfs.tar": tar_with({"etc/machine-id": b"1234\n"})})
    checks = {check.name: check for check in compare_outputs(first, second)}
    assert checks["vmlinuz"].matches and not checks["rootfs.tar"].matches
    assert "etc/machine-id" in checks["rootfs.tar"].details


def test_the_two_build_conditions_differ_in_everything_the_issue_lists() -> None:
    first, second = CONDITIONS
    for field in ("tz", "locale", "umask", "hostname", "folder"):
        assert getattr(first, field) != getattr(second, field)


# --- a sealed manifest can still be malformed: the seal is a sha256 anyone can recompute ---------------
def sealed(tmp_path: Path, change: Callable[[dict[str, Any]], object]) -> Path:
    """A manifest as a build writes it, changed, then sealed again as anyone can."""
    from bootkiln.core.manifest import seal

    data = json.loads(write_manifest(tmp_path).read_text())
    change(data)
    path = tmp_path / "sealed.json"
    path.write_text(json.dumps(seal(data)))
    return path


@pytest.fixture
def no_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed manifest is refused before a build (engine, network) is even made."""

    def tripwire(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuild started a build from a malformed manifest")

    monkeypatch.setattr("bootkiln.pipeline.Build", tripwire)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["stages"].update({"bogus": {"key": "k"}}), "key 'stages': unknown stage 'bogus'"),
    (lambda d: d.pop("inputs"), "key 'inputs': Field required"),
    (lambda d: d.update(inputs=["scripts"]), "key 'inputs'"),
    (lambda d: d["profile"]["debian"].update(suite=5), "key 'profile' is not a valid profile"),
    (lambda d: d["profile"].update(rootfs="x"), "key 'profile' is not a valid profile"),
    (lambda d: d.update(profile=[1]), "key 'profile'"),
    (lambda d: d.update(bootkiln="0.1.0"), "key 'bootkiln'"),
    (lambda d: d.update(bootkiln=None), "key 'bootkiln'"),
    (lambda d: d["bootkiln"].pop("commit"), "key 'bootkiln.commit'"),
    (lambda d: d.update(artifacts=["boot.iso"]), "key 'artifacts'"),
    (lambda d: d["artifacts"].update({"boot.iso": 5}), "key 'artifacts.boot.iso'"),
    (lambda d: d["artifacts"].update({"../../etc/passwd": "ab" * 32}), "key 'artifacts.../../etc/passwd.[key]'"),
    (lambda d: d.update(stages=[]), "key 'stages'"),
    (lambda d: d.update(stages={}), "key 'stages' is empty"),
    (lambda d: d.update(profile_file=5), "key 'profile_file'"),
    (lambda d: d.update(archive="bookworm"), "key 'archive'"),
    (lambda d: d.update(extra=1), "key 'extra': unknown key"),
    (lambda d: d["artifacts"].update({"bogus.img": "ab" * 32}),
     "key 'artifacts': 'bogus.img' is not produced by the recorded stages"),
    (lambda d: d.update(format=True), "not a bootkiln manifest of format 1"),
    (lambda d: d.update(format="1"), "not a bootkiln manifest of format 1"),
])
def test_a_sealed_but_malformed_manifest_is_an_input_error(tmp_path: Path, no_build: None,
                                                           change: Callable[[dict[str, Any]], object],
                                                           message: str) -> None:
    path = sealed(tmp_path, change)
    with pytest.raises(InputError) as caught:
        rebuild(path, Reporter(quiet_output=True))
    assert message in caught.value.message, caught.value.message
    assert caught.value.hint


def test_a_manifest_that_is_not_text_or_json_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe\x00{")
    with pytest.raises(InputError, match="not a readable manifest"):
        load_manifest(path)
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="not a readable manifest"):
        load_manifest(path)


def test_invoke_rebuild_of_a_malformed_manifest_exits_2_without_a_traceback(tmp_path: Path) -> None:
    from tests.unit.test_cli_process import invoke_task

    for number, change in enumerate([lambda d: d["stages"].update({"bogus": {}}),
                                     lambda d: d["artifacts"].update({"bogus.img": "ab" * 32})]):
        (tmp_path / str(number)).mkdir()
        path = sealed(tmp_path / str(number), change)
        status, output = invoke_task(["rebuild", "--manifest", str(path)], tmp_path)
        assert status == 2, output
        assert "Traceback" not in output and "bad input" in output, output


def test_only_the_second_build_gets_another_builder_architecture(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from bootkiln.console import Reporter
    from bootkiln.profile.schema import Profile
    from bootkiln.verify import reproduce

    seen: list[str | None] = []

    def fake_run(self: object, argv: list[str], *, where: Any, **kwargs: object) -> list[str]:
        seen.append(where.env.get("BOOTKILN_BUILDER_ARCH"))
        return []

    monkeypatch.setenv("BOOTKILN_BUILDER_ARCH", "amd64")  # the caller's own setting must not leak into build one
    monkeypatch.setattr("bootkiln.core.runner.Runner.run", fake_run)
    monkeypatch.setattr(reproduce, "project_root", lambda: tmp_path / "checkout")
    (tmp_path / "checkout").mkdir()
    monkeypatch.setattr(reproduce, "compare_outputs", lambda first, second, builders_differ=False: [])
    reproduce.verify(Profile(), None, Reporter(quiet_output=True), scratch=tmp_path / "scratch",
                     builder_arch="arm64")
    assert seen == [None, "arm64"]
