"""Generated CA and host keys live outside out/ (whose artifacts get uploaded), in a 0700 folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootkiln.commands import installer as installer_commands

PROFILE = ('[userdata]\nhostname = "web1.example.com"\nkey_type = "ec-p256"\n'
           '[userdata.puppet]\nserver = "puppet.example.com"\n')


def private_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and (p.suffix == ".key" or
                                                                  b"PRIVATE KEY" in p.read_bytes()))


def test_generated_keys_are_not_written_under_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  private_pki: Path) -> None:
    monkeypatch.setenv("BOOTKILN_OUT", str(tmp_path / "out"))
    profile = tmp_path / "site.toml"
    profile.write_text(PROFILE)
    assert installer_commands.userdata(str(profile)) == 0
    assert private_files(tmp_path / "out") == []
    ca_key = private_pki / "site" / "ca.key"
    assert ca_key.stat().st_mode & 0o777 == 0o600
    assert (private_pki / "site" / "hosts" / "web1.example.com.key").stat().st_mode & 0o777 == 0o600
    assert (private_pki / "site").stat().st_mode & 0o777 == 0o700


def test_without_bootkiln_pki_the_keys_go_to_the_checkouts_cache_folder(fake_home: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from bootkiln.paths import pki_root

    monkeypatch.delenv("BOOTKILN_PKI")
    monkeypatch.setenv("BOOTKILN_CACHE", "/tmp")  # its parent (/) must not matter
    monkeypatch.setenv("BOOTKILN_OUT", str(fake_home / "out"))
    assert pki_root() == (fake_home / ".cache" / "pki").resolve()
    assert not pki_root().is_relative_to((fake_home / "out").resolve())


def test_a_ca_made_under_out_by_an_older_bootkiln_is_moved_out_and_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_pki: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The hosts it signed must keep trusting it, so it is moved rather than replaced."""
    monkeypatch.setenv("BOOTKILN_OUT", str(tmp_path / "out"))
    profile = tmp_path / "site.toml"
    profile.write_text(PROFILE)
    monkeypatch.setenv("BOOTKILN_PKI", str(tmp_path / "scratch"))
    assert installer_commands.userdata(str(profile)) == 0
    old = tmp_path / "out" / "site" / "pki"
    (tmp_path / "scratch" / "site").rename(old)
    ca = (old / "ca.pem").read_text()
    monkeypatch.setenv("BOOTKILN_PKI", str(private_pki))
    assert installer_commands.userdata(str(profile)) == 0
    assert not old.exists()
    assert (private_pki / "site" / "ca.pem").read_text() == ca
    assert f"moved the CA and keys from {old}" in capsys.readouterr().out
    assert private_files(tmp_path / "out") == []


def test_a_loose_key_folder_is_tightened(tmp_path: Path, private_pki: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOTKILN_OUT", str(tmp_path / "out"))
    (private_pki / "site").mkdir()
    (private_pki / "site").chmod(0o755)  # group and others may list it
    profile = tmp_path / "site.toml"
    profile.write_text(PROFILE)
    assert installer_commands.userdata(str(profile)) == 0
    assert (private_pki / "site").stat().st_mode & 0o777 == 0o700


def test_keys_left_under_out_beside_a_new_ca_are_pointed_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_pki: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BOOTKILN_OUT", str(tmp_path / "out"))
    profile = tmp_path / "site.toml"
    profile.write_text(PROFILE)
    assert installer_commands.userdata(str(profile)) == 0
    old = tmp_path / "out" / "site" / "pki"
    old.mkdir(parents=True)
    (old / "ca.key").write_text("an old key")
    capsys.readouterr()
    assert installer_commands.userdata(str(profile)) == 0
    captured = capsys.readouterr()
    assert f"{old} still holds private keys" in captured.out + captured.err
