"""The CLI's path arguments given odd paths: a folder, a missing file, a FIFO, a binary file, a name
with a newline, an empty file, a link loop. Each is an input error (exit 2) with no traceback; a FIFO
never blocks a task waiting for a writer.

The command functions tasks.py calls run in process (fast); the FIFO cases, which would hang rather
than fail on a task that opens the path, go through the real CLI process with a timeout.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.properties import examples

from bootkiln.commands import build as build_commands
from bootkiln.commands import installer as installer_commands
from bootkiln.commands import publish as publish_commands
from bootkiln.errors import InputError
from bootkiln.paths import read_user_file
from bootkiln.publish.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[2]
ODD = ("folder", "missing", "fifo", "binary", "newline", "empty", "loop")


def odd_path(tmp_path: Path, kind: str) -> Path:
    if kind == "folder":
        return tmp_path
    if kind == "missing":
        return tmp_path / "no such file.toml"
    if kind == "fifo":
        path = tmp_path / "fifo.toml"
        os.mkfifo(path)
        return path
    if kind == "loop":
        path = tmp_path / "loop.toml"
        path.symlink_to(path)
        return path
    path = tmp_path / ("line\nbreak.toml" if kind == "newline" else f"{kind}.toml")
    path.write_bytes(b"" if kind == "empty" else bytes(range(256)) * 4)
    return path


# Each task with a path flag, as tasks.py calls it; `None` where a flag is not given.
TASKS: dict[str, Callable[[str], int]] = {
    "check-profile --profile": build_commands.check_profile,
    "rebuild --manifest": build_commands.rebuild,
    "fake-imds --userdata": lambda path: installer_commands.fake_imds(path, 0, "optional"),
    "launch --userdata": lambda path: publish_commands.launch("installer", "web1.example.com", None, path),
}


# fake-imds serves any regular file as it is (as EC2 would), and an empty profile is all defaults.
VALID_AS_IS = {("fake-imds --userdata", "binary"), ("fake-imds --userdata", "newline"),
               ("fake-imds --userdata", "empty"), ("check-profile --profile", "empty")}


@pytest.mark.parametrize(("task", "kind"), [(task, kind) for task in sorted(TASKS) for kind in ODD
                                            if kind != "fifo" and (task, kind) not in VALID_AS_IS])
def test_an_odd_path_is_an_input_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], task: str,
                                       kind: str) -> None:
    path = odd_path(tmp_path, kind)
    assert TASKS[task](str(path)) == 2
    output = capsys.readouterr()
    assert "Traceback" not in output.out + output.err
    assert "bad input" in output.out + output.err


@pytest.mark.parametrize("argv", [["check-profile", "--profile"], ["rebuild", "--manifest"],
                                  ["fake-imds", "--userdata"]])
def test_a_fifo_is_refused_at_once_by_the_real_cli(tmp_path: Path, argv: list[str]) -> None:
    fifo = odd_path(tmp_path, "fifo")
    env = {**os.environ, "BOOTKILN_CACHE": str(tmp_path / "cache"), "BOOTKILN_OUT": str(tmp_path / "out"),
           "NO_COLOR": "1"}
    env.pop("BOOTKILN_HOME", None)
    try:
        process = subprocess.run([sys.executable, "-m", "invoke", *argv, str(fifo)], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"invoke {argv[0]} waited on the FIFO instead of refusing it")
    assert process.returncode == 2, process.stdout + process.stderr
    assert "Traceback" not in process.stdout + process.stderr
    assert "not a regular file" in process.stdout + process.stderr


@pytest.mark.parametrize("kind", ODD)
def test_read_user_file_and_read_manifest_refuse_odd_paths(tmp_path: Path, kind: str) -> None:
    path = odd_path(tmp_path, kind)
    if kind in ("binary", "newline", "empty"):
        assert read_user_file(path, "thing") == path.read_bytes()
    else:
        with pytest.raises(InputError, match=r"does not exist|is a folder|not a regular file|cannot read"):
            read_user_file(path, "thing")
    with pytest.raises(InputError):
        read_manifest(path, build_task="build-iso")


@pytest.fixture
def out_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BOOTKILN_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("BOOTKILN_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.parametrize("kind", ["newline", "missing folders", "fifo"])
def test_userdata_output_to_an_odd_but_writable_path_is_written_0600(out_folder: Path, kind: str) -> None:
    if kind == "fifo":
        target = odd_path(out_folder, "fifo")  # replaced by the document, never opened
    elif kind == "newline":
        target = out_folder / "a\nb.gz"
    else:
        target = out_folder / "x" / "y" / "web1.gz"
    assert installer_commands.userdata("installer", "web1.example.com", str(target)) == 0
    assert stat.S_ISREG(target.stat().st_mode) and stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize("kind", ["folder", "under a file"])
def test_userdata_output_that_cannot_be_written_is_an_input_error(out_folder: Path, kind: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    target = out_folder if kind == "folder" else odd_path(out_folder, "binary") / "web1.gz"
    assert installer_commands.userdata("installer", "web1.example.com", str(target)) == 2


@settings(max_examples=examples(40))
@given(st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=["Cs"]), min_size=1,
               max_size=30))
def test_any_profile_argument_is_a_profile_or_an_input_error(ref: str) -> None:
    """--profile takes a name or a path; any string is one of those or an input error."""
    from bootkiln.profile.loader import load_profile

    with contextlib.suppress(InputError):
        load_profile(ref)
