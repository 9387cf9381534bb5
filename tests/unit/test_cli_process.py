"""`invoke rootfs` as a user runs it, with no engine reachable: the right exit code and the right words.

DOCKER_HOST points at a socket that does not exist, so these need no Docker and prove the order of
checks: a bad profile is reported (exit 2) before any engine contact; a good one reaches the engine
check and fails there (exit 3) with a hint on how to start one, before any network access.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NO_ENGINE = "unix:///nonexistent/docker.sock"
WriteProfile = Callable[[str], Path]


def invoke_task(args: list[str], tmp_path: Path, extra_env: dict[str, str] | None = None) -> tuple[int, str]:
    env = {
        **os.environ,
        **(extra_env or {}),
        "DOCKER_HOST": NO_ENGINE,
        "BOOTKILN_CACHE": str(tmp_path / "cache"),
        "BOOTKILN_OUT": str(tmp_path / "out"),
        "NO_COLOR": "1",
    }
    env.pop("BOOTKILN_HOME", None)
    process = subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=30, check=False,
    )
    return process.returncode, process.stdout


def test_bad_profile_exits_2_before_any_engine_contact(tmp_path: Path, write_profile: WriteProfile) -> None:
    bad_profile = write_profile('[debian]\nsuitee = "bookworm"\n')
    status, output = invoke_task(["rootfs", "--profile", str(bad_profile)], tmp_path)
    assert status == 2, output
    assert str(bad_profile) in output
    assert "debian.suitee" in output
    assert "bad input" in output
    assert "Traceback" not in output
    # The profile's own path may contain anything; everything else must not mention the engine.
    assert "docker" not in output.replace(str(bad_profile), "<profile>").lower(), output
    assert not (tmp_path / "cache").exists()
    assert not (tmp_path / "out").exists()


def test_valid_default_run_without_an_engine_exits_3_with_a_hint(tmp_path: Path) -> None:
    status, output = invoke_task(["rootfs"], tmp_path)
    assert status == 3, output
    assert "no Docker engine is reachable" in output
    assert NO_ENGINE in output
    assert "(DOCKER_HOST)" in output
    assert "environment" in output
    assert "hint:" in output
    for way_to_start_one in ("dockerd", "systemctl", "DOCKER_HOST"):
        assert way_to_start_one in output.split("hint:", 1)[1], output
    assert "Traceback" not in output
    assert not (tmp_path / "out").exists()


def test_an_unknown_builder_architecture_exits_2_before_any_engine_contact(tmp_path: Path) -> None:
    env_status, env_output = invoke_task(["build-iso"], tmp_path, {"BOOTKILN_BUILDER_ARCH": "riscv64"})
    flag_status, flag_output = invoke_task(["verify-reproducible", "--builder-arch", "s390x"], tmp_path)
    assert env_status == 2 and "BOOTKILN_BUILDER_ARCH='riscv64'" in env_output, env_output
    assert flag_status == 2 and "--builder-arch 's390x'" in flag_output, flag_output
    for output in (env_output, flag_output):
        assert "amd64, arm64" in output and "Traceback" not in output
        assert "no Docker engine" not in output, "refused before the engine was asked"
