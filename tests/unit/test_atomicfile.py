"""Atomic writes leave no temporary file behind on any failure: the temporary file may hold a private key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootkiln import pipeline
from bootkiln.atomicfile import write_atomic
from bootkiln.commands import installer as installer_commands
from bootkiln.installer import pki


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


def test_a_write_is_atomic_and_private_from_the_first_byte(tmp_path: Path) -> None:
    target = tmp_path / "keys" / "host.key"
    write_atomic(target, b"secret", mode=0o600, private_parent=True)
    assert target.read_bytes() == b"secret"
    assert target.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    write_atomic(target, "again", mode=0o600)
    assert target.read_text() == "again"
    assert leftovers(tmp_path) == []


def test_a_folder_as_the_target_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError):
        write_atomic(tmp_path / "dir", b"secret", mode=0o600)
    assert leftovers(tmp_path) == []


def test_a_failing_rename_removes_the_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder appearing at the target between the check and the rename, a full disk, Ctrl-C: all the same."""
    def failing_replace(self: Path, target: Path) -> Path:
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "replace", failing_replace)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "host.key", b"secret", mode=0o600)
    assert leftovers(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_pki_and_pipeline_writes_clean_up_after_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_replace(self: Path, target: Path) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        pki.generate(tmp_path / "pki", certname="h.example.com", hostname="h.example.com",
                     server="p.example.com", key_type="ec-p256")
    with pytest.raises(OSError, match="No space left"):
        pipeline._write_atomic(tmp_path / "SHA256SUMS", "x  y\n")
    assert leftovers(tmp_path) == []


def test_userdata_output_to_a_folder_is_an_input_error_and_leaves_no_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BOOTKILN_OUT", str(tmp_path / "out"))
    profile = tmp_path / "profile.toml"
    profile.write_text('[userdata]\nhostname = "web1.example.com"\nkey_type = "ec-p256"\n'
                       '[userdata.puppet]\nserver = "puppet.example.com"\n')
    target = tmp_path / "target"
    target.mkdir()
    assert installer_commands.userdata(str(profile), output=str(target)) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert f"{target} is a folder" in captured.err + captured.out
    assert f"--output {target / 'web1.example.com.gz'}" in captured.err + captured.out
    assert "certificates for" not in captured.out, "refused before any key was made"
    assert list(target.iterdir()) == []
    assert leftovers(tmp_path) == []


def test_userdata_output_that_cannot_be_written_is_an_input_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BOOTKILN_OUT", str(tmp_path / "out"))
    profile = tmp_path / "profile.toml"
    profile.write_text('[userdata]\nhostname = "web1.example.com"\nkey_type = "ec-p256"\n'
                       '[userdata.puppet]\nserver = "puppet.example.com"\n')
    (tmp_path / "file").write_text("")
    assert installer_commands.userdata(str(profile), output=str(tmp_path / "file" / "ud.gz")) == 2
    captured = capsys.readouterr()
    assert "cannot write the user-data" in captured.err + captured.out
