"""No error message quotes key material: a rejected line of a private key is named by file and number only.

A valid EC P-256 key re-wrapped at 100 columns is refused (PEM lines are at most 76 characters).
The message used to quote the first 40 characters of the line: 23 of the key's 32 secret bytes.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bootkiln.commands import installer as installer_commands
from bootkiln.commands import publish as publish_commands
from bootkiln.installer import pki

WriteProfile = Callable[[str], Path]
HOST = "web1.example.com"


def rewrapped_key(columns: int = 100) -> tuple[str, str]:
    """An EC P-256 key in PEM with its base64 body at `columns` per line, and that body on one line."""
    key = ec.generate_private_key(ec.SECP256R1())
    text = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()
    lines = text.strip().splitlines()
    body = "".join(lines[1:-1])
    wrapped = [body[i:i + columns] for i in range(0, len(body), columns)]
    return "\n".join([lines[0], *wrapped, lines[-1]]) + "\n", body


def leaked_runs(body: str, output: str, run: int = 8) -> list[str]:
    """Every run of `run` characters of the key's body that shows up in the output."""
    return sorted({body[i:i + run] for i in range(len(body) - run + 1) if body[i:i + run] in output})


def profile_with_cert_files(tmp_path: Path, key_text: str | None = None) -> Path:
    """A profile naming certificate files; the key is the host's real one unless `key_text` is given."""
    source = pki.generate(tmp_path / "source", certname=HOST, hostname=HOST, server="puppet.example.com",
                          key_type="ec-p256")
    key = source.key.get_secret_value() if key_text is None else key_text
    for name, text in {"ca": source.ca, "crl": source.crl, "cert": source.cert, "key": key}.items():
        (tmp_path / f"{name}.pem").write_text(text)
    path = tmp_path / "profile.toml"
    path.write_text(f'[userdata]\nhostname = "{HOST}"\n[userdata.puppet]\nserver = "puppet.example.com"\n'
                    '[userdata.certs]\nca = "ca.pem"\ncrl = "crl.pem"\ncert = "cert.pem"\nkey = "key.pem"\n')
    return path


def test_a_rewrapped_key_file_is_refused_by_file_and_line_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BOOTKILN_OUT", str(tmp_path / "out"))
    key_text, body = rewrapped_key()
    profile = profile_with_cert_files(tmp_path, key_text)
    assert installer_commands.userdata(str(profile)) == 2
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "userdata.certs" in output
    assert str(tmp_path / "key.pem") in output
    assert "unexpected line 2" in output
    assert leaked_runs(body, output) == []


def test_a_rewrapped_key_in_a_userdata_file_is_refused_without_quoting_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`launch --userdata FILE` decodes the document before it talks to AWS."""
    monkeypatch.setenv("BOOTKILN_OUT", str(tmp_path / "out"))
    key_text, body = rewrapped_key()
    good = profile_with_cert_files(tmp_path)
    assert installer_commands.userdata(str(good), output=str(tmp_path / "ud.gz")) == 0
    text = gzip.decompress((tmp_path / "ud.gz").read_bytes()).decode()
    start, end = text.index("begin=key\n") + len("begin=key\n"), text.index("end=key\n")
    tampered = text[:start] + key_text + text[end:]
    (tmp_path / "ud.gz").write_bytes(gzip.compress(tampered.encode()))
    capsys.readouterr()
    assert publish_commands.launch(str(good), HOST, userdata_file=str(tmp_path / "ud.gz")) == 2
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "certs.key" in output
    assert leaked_runs(body, output) == []


def test_key_lines_outside_their_section_are_not_quoted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Key lines outside their section are read as key=value lines: still never quoted."""
    monkeypatch.setenv("BOOTKILN_OUT", str(tmp_path / "out"))
    good = profile_with_cert_files(tmp_path)
    assert installer_commands.userdata(str(good), output=str(tmp_path / "ud.gz")) == 0
    text = gzip.decompress((tmp_path / "ud.gz").read_bytes()).decode()
    section = text[text.index("begin=key\n"):text.index("end=key\n") + len("end=key\n")]
    body_lines = section.splitlines()[2:-2]
    body = "".join(body_lines)
    stray = "".join(f"{line}\n" for line in body_lines)
    (tmp_path / "ud.gz").write_bytes(gzip.compress((text + stray).encode()))
    capsys.readouterr()
    assert publish_commands.launch(str(good), HOST, userdata_file=str(tmp_path / "ud.gz")) == 2
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "user-data line" in output
    assert leaked_runs(body, output) == []


def test_a_key_given_as_the_certificate_is_not_quoted_either(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Files mixed up: the key's body (without its BEGIN line) named as certs.cert."""
    monkeypatch.setenv("BOOTKILN_OUT", str(tmp_path / "out"))
    key_text, body = rewrapped_key(64)
    profile = profile_with_cert_files(tmp_path)
    (tmp_path / "cert.pem").write_text("\n".join(key_text.splitlines()[1:]) + "\n")
    assert installer_commands.userdata(str(profile)) == 2
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert f"{tmp_path / 'cert.pem'}: certs.cert: not a plain PEM CERTIFICATE: unexpected line 1" in output
    assert leaked_runs(body, output) == []
