"""The rootfs stage for real: builder container, mmdebstrap, cache, kill safety, reproducibility."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from bootkiln.console import Reporter
from bootkiln.core.cache import StageCache
from bootkiln.core.engine import Engine
from bootkiln.core.runner import Builder, Host, Runner
from bootkiln.pipeline import Build
from bootkiln.profile.loader import load_profile
from bootkiln.stages.base import StageResult
from tests.fixtures import ROOT, SessionBuild, invoke


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rootfs_tarball_is_normalised(default_rootfs: StageResult, session_build: SessionBuild) -> None:
    tarball = default_rootfs.artifact("rootfs.tar")
    epoch = session_build.build.archive.source_date_epoch
    with tarfile.open(tarball) as archive:
        members = archive.getmembers()
    names = [m.name for m in members]
    assert "./etc/os-release" in names and "./etc/machine-id" in names
    assert all(m.mtime <= epoch for m in members), "an mtime is later than SOURCE_DATE_EPOCH"
    assert all(m.uname == "" and m.gname == "" for m in members), "owners must be numeric only"
    by_name = {m.name: m for m in members}
    assert by_name["./etc/machine-id"].size == 0
    assert by_name["./usr/local/sbin/bootkiln-info"].mode == 0o755
    assert by_name["./etc/motd"].mode == 0o644
    assert by_name["./tmp"].mode == 0o1777, "overlaying must not reset existing folders' modes"
    forbidden = ("./var/lib/apt/lists/", "./var/cache/apt/", "./var/log/", "./etc/ssh/ssh_host_")
    leaked = [m.name for m in members if m.isfile() and m.name.startswith(forbidden)]
    assert leaked == []
    # GNU tar --sort=name orders each folder's entries bytewise.
    for folder in ("./etc/", "./usr/bin/"):
        children = [n for n in names if n.startswith(folder) and "/" not in n[len(folder):]]
        assert children == sorted(children, key=lambda n: n.encode())


def test_package_manifest_and_sums(default_rootfs: StageResult, session_build: SessionBuild) -> None:
    out = session_build.workspace.output_dir("default")
    rows = [line.split("\t") for line in (out / "packages.tsv").read_text().splitlines()]
    assert all(len(row) == 4 and len(row[3]) == 64 for row in rows), "name, version, architecture, sha256"
    assert {"base-files", "dpkg", "libc6"} <= {row[0] for row in rows}
    assert {row[2] for row in rows} <= {"amd64", "all"}
    lines = (out / "SHA256SUMS").read_text().splitlines()
    sums = {name: digest for digest, name in (line.split("  ") for line in lines)}
    assert sums["rootfs.tar"] == sha256(out / "rootfs.tar")
    assert sums["packages.tsv"] == sha256(out / "packages.tsv")


def test_unchanged_rebuild_is_a_cache_hit_without_containers(
    default_rootfs: StageResult, session_build: SessionBuild, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_containers(*args: object, **kwargs: object) -> int:
        raise AssertionError("a cache hit must not start a container")

    monkeypatch.setattr(Engine, "run", no_containers)
    again = Build(load_profile(None), workspace=session_build.workspace, reporter=Reporter())
    result = again.rootfs()
    assert result.cached and result.key == default_rootfs.key


def interfaces(proc_net_dev: list[str]) -> set[str]:
    return {line.split(":")[0].strip() for line in proc_net_dev if ":" in line}


def test_download_step_uses_host_network_and_the_rest_none(
    default_rootfs: StageResult, session_build: SessionBuild, engine: Engine
) -> None:
    """Network follows the step: the bootstrap downloads, finalise runs cut off."""
    runner = Runner(Reporter(quiet_output=True), engine)
    image = session_build.build.builder.tag
    offline = runner.run(["cat", "/proc/net/dev"], stage="t", where=Builder(image=image, network="none"))
    online = runner.run(["cat", "/proc/net/dev"], stage="t", where=Builder(image=image, network="host"))
    assert interfaces(offline) == {"lo"}
    assert interfaces(online) - {"lo"}, "host network should show the host's interfaces"
    steps = [step for step in session_build.runner.container_steps if step.startswith("rootfs:")]
    assert steps == ["rootfs:bootstrap:host", "rootfs:finalise:none"]


def test_image_checks_pass_on_the_default_rootfs(default_rootfs: StageResult, session_build: SessionBuild) -> None:
    env = session_build.env()
    result = invoke(["test-image"], env=env)
    assert result.returncode == 0, result.output
    assert "rootfs from cache" in result.output
    assert " passed" in result.output and "failed" not in result.output


def test_image_checks_catch_a_broken_image(
    default_rootfs: StageResult, session_build: SessionBuild, tmp_path: Path
) -> None:
    """The checks can fail: a check file that expects something the image lacks must fail the task."""
    profile = tmp_path / "broken.toml"
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "test_extra.py").write_text(
        "def test_vim_is_installed(host):\n    assert host.package('vim').is_installed\n"
    )
    profile.write_text('[checks]\npaths = ["checks/test_extra.py"]\n')
    env = session_build.env()
    result = invoke(["test-image", "--profile", str(profile)], env=env)
    assert result.returncode == 4, result.output  # the image's fault, not the environment's (3)
    assert "test_vim_is_installed" in result.output and "1 failed" in result.output
    assert "the image failed its checks" in result.output
    assert "1 check failed" in result.output
    assert f"failed: {tmp_path / 'checks' / 'test_extra.py'}::test_vim_is_installed" in result.output


def test_killed_build_leaves_no_entry_and_rebuild_reproduces(
    default_rootfs: StageResult, session_build: SessionBuild, tmp_path: Path
) -> None:
    """SIGKILL mid-build: nothing complete-looking is cached. Two later builds at once, in another TZ,
    umask and folder, minutes after the first, both succeed and give the same tarball bytes."""
    cache = tmp_path / "cache"
    env = {**os.environ, "BOOTKILN_CACHE": str(cache), "BOOTKILN_OUT": str(tmp_path / "out-a"),
           "TZ": "Pacific/Kiritimati"}
    process = subprocess.Popen(
        ["sh", "-c", 'umask 077; exec "$0" -m invoke rootfs', sys.executable],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "rootfs |" in line and "extracting archives" in line:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "".join(seen[-20:])
    assert StageCache(cache).lookup("rootfs", default_rootfs.key) is None
    assert not list((cache / "stages").glob("rootfs/*")) if (cache / "stages").exists() else True

    time.sleep(1)
    runs = []
    for folder, tz in (("out-b", "America/Anchorage"), ("out-c", "Asia/Kolkata")):
        runs.append(subprocess.Popen(
            ["sh", "-c", 'umask 0002; exec "$0" -m invoke rootfs', sys.executable], cwd=ROOT,
            env={**env, "BOOTKILN_OUT": str(tmp_path / folder), "TZ": tz},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    outputs = [run.communicate(timeout=900)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert any("waited for another build" in output for output in outputs), outputs
    expected = sha256(default_rootfs.artifact("rootfs.tar"))
    for folder in ("out-b", "out-c"):
        assert sha256(tmp_path / folder / "default" / "rootfs.tar") == expected
    builder_output = next(o for o in outputs if "rootfs built" in o)
    assert builder_output.count("refused privileged containers") <= 1, "the fallback is logged once"


def test_unreachable_mirror_is_retried_then_named(isolated: dict[str, str], tmp_path: Path) -> None:
    profile = tmp_path / "offline.toml"
    profile.write_text('[debian]\nmirror = "http://127.0.0.1:9/debian"\n')
    started = time.monotonic()
    result = invoke(["rootfs", "--profile", str(profile)], env=isolated)
    assert result.returncode == 3, result.output
    assert "http://127.0.0.1:9/debian" in result.output and "4 attempts" in result.output
    assert time.monotonic() - started > 6, "three retries with backoff take at least 7 s"


def test_unknown_suite_is_the_profiles_fault_and_names_the_mirror(isolated: dict[str, str], tmp_path: Path) -> None:
    """A 404 for the suite is not retried and not the environment's fault: exit 2, before any stage."""
    profile = tmp_path / "typo.toml"
    profile.write_text('[debian]\nsuite = "bookwrom"\n')
    result = invoke(["rootfs", "--profile", str(profile)], env=isolated)
    assert result.returncode == 2, result.output
    assert "error (bad input): key 'debian.suite'" in result.output
    assert "'bookwrom'" in result.output and "http://deb.debian.org/debian" in result.output
    assert "HTTP 404" in result.output
    assert "did you mean 'bookworm'?" in result.output
    assert "▶ rootfs" not in result.output


def test_files_move_through_the_api_with_modes_and_devices(
    engine: Engine, session_build: SessionBuild, tmp_path: Path
) -> None:
    image = session_build.build.builder.tag
    status = engine.run(
        image, ["sh", "-c", "mkdir -p /work/out && mknod /work/out/null c 1 3 && echo hi > /work/out/f "
                "&& chmod 0600 /work/out/f && ln -s f /work/out/l"],
        network="none", on_line=print, collect=[("/work/out", tmp_path)],
    )
    assert status == 0
    assert (tmp_path / "f").read_text() == "hi\n"
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "l").readlink() == Path("f")
    assert (tmp_path / "null").is_char_device()


def test_builder_image_is_reused_when_inputs_are_unchanged(session_build: SessionBuild) -> None:
    fresh = Build(load_profile(None), workspace=session_build.workspace, reporter=Reporter())
    assert fresh.builder.tag == session_build.build.builder.tag
    assert fresh.builder.image_id == session_build.build.builder.image_id


def test_missing_builder_base_gives_a_clear_error(isolated: dict[str, str], tmp_path: Path) -> None:
    profile = tmp_path / "nobase.toml"
    profile.write_text('[builder]\nbase = "image"\nimage = "localhost:1/none/such:image"\n')
    result = invoke(["rootfs", "--profile", str(profile)], env=isolated)
    assert result.returncode == 3, result.output
    assert "no builder base image" in result.output and "localhost:1/none/such:image" in result.output


def test_host_runner_streams_with_stage_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    Runner(Reporter()).run([sys.executable, "-c", "print('hello')"], stage="demo", where=Host())
    assert "demo | hello" in capsys.readouterr().out


def test_a_200000_package_list_reaches_mmdebstrap(session_build: SessionBuild, tmp_path: Path) -> None:
    """The list travels as a file and in chunks: in BK_PACKAGES it failed with 'argument list too long'."""
    names = ["ca-certificates", "less", "netbase"]
    packages = [names[i % len(names)] for i in range(200_000)]
    profile = tmp_path / "many.toml"
    profile.write_text("[rootfs]\npackages = [" + ", ".join(f'"{name}"' for name in packages) + "]\n")
    result = invoke(["rootfs", "--profile", str(profile)], env=session_build.env())
    assert "argument list too long" not in result.output
    assert result.returncode == 0, result.output[-3000:]
    listed = (session_build.workspace.out / "many" / "packages.tsv").read_text()
    installed = {line.split("\t")[0] for line in listed.splitlines()}
    assert set(names) <= installed
