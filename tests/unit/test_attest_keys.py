"""Signing keys: what loads, what is refused, and that no message ever carries key bytes."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from bootkiln.attest.keys import (
    configured_key_path,
    generate_key_pair,
    keyid,
    load_private_key,
    load_public_key,
)
from bootkiln.errors import InputError


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def assert_no_key_bytes(message: str, *files: Path) -> None:
    """No line of a key file, nor its base64 body, appears in a message."""
    for path in files:
        text = path.read_text(errors="replace")
        body = "".join(line for line in text.splitlines() if not line.startswith("-----"))
        assert body[:24] not in message
        for line in text.splitlines():
            if line and not line.startswith("-----"):
                assert line not in message


@pytest.mark.parametrize("algorithm", ["ed25519", "ecdsa-p256"])
def test_a_generated_pair_loads_and_the_private_key_is_0600(tmp_path: Path, algorithm: str) -> None:
    private, public = generate_key_pair(tmp_path / "keys", algorithm)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert keyid(load_private_key(private).public_key()) == keyid(load_public_key(public))
    # A private key file also serves as a verification key (only its public half is used).
    assert keyid(load_public_key(private)) == keyid(load_public_key(public))


def test_generating_never_overwrites_a_key(tmp_path: Path) -> None:
    private, _ = generate_key_pair(tmp_path)
    before = private.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        generate_key_pair(tmp_path)
    assert private.read_bytes() == before


def test_a_file_that_is_not_a_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "notakey.pem"
    path.write_text("-----BEGIN PRIVATE KEY-----\nU2VjcmV0U2VjcmV0U2VjcmV0U2VjcmV0\n-----END PRIVATE KEY-----\n")
    with pytest.raises(InputError) as caught:
        load_private_key(path)
    assert str(path) in caught.value.message and "not a PEM private key" in caught.value.message
    assert_no_key_bytes(caught.value.message + caught.value.hint, path)
    garbage = tmp_path / "garbage.pub"
    garbage.write_bytes(b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGarbageGarbageGarbage user@host\n")
    with pytest.raises(InputError) as caught:
        load_public_key(garbage)
    assert "not a PEM public key" in caught.value.message
    assert "AAAAC3NzaC1" not in caught.value.message + caught.value.hint


def test_other_algorithms_are_refused_by_name(tmp_path: Path) -> None:
    for name, key in (("rsa.key", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
                      ("p384.key", ec.generate_private_key(ec.SECP384R1()))):
        path = tmp_path / name
        path.write_bytes(_pem(key))
        with pytest.raises(InputError, match="Ed25519 or ECDSA P-256") as caught:
            load_private_key(path)
        assert_no_key_bytes(caught.value.message + caught.value.hint, path)


def test_missing_and_encrypted_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_private_key(tmp_path / "absent.key")
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"correct horse")))
    monkeypatch.delenv("BOOTKILN_SIGNING_KEY_PASSWORD", raising=False)
    with pytest.raises(InputError, match="encrypted"):
        load_private_key(encrypted)
    monkeypatch.setenv("BOOTKILN_SIGNING_KEY_PASSWORD", "wrong")
    with pytest.raises(InputError, match="password is wrong") as caught:
        load_private_key(encrypted)
    assert "wrong" not in caught.value.message.replace("password is wrong", "")
    monkeypatch.setenv("BOOTKILN_SIGNING_KEY_PASSWORD", "correct horse")
    assert isinstance(load_private_key(encrypted), ed25519.Ed25519PrivateKey)


def test_the_environment_overrides_the_profile_and_paths_are_relative_to_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOOTKILN_SIGNING_KEY", raising=False)
    assert configured_key_path(None, tmp_path) is None
    assert configured_key_path("keys/s.key", tmp_path) == (tmp_path / "keys" / "s.key").resolve()
    monkeypatch.setenv("BOOTKILN_SIGNING_KEY", str(tmp_path / "env.key"))
    assert configured_key_path("keys/s.key", tmp_path) == tmp_path / "env.key"


def test_keyid_is_the_sha256_of_the_public_key_der(tmp_path: Path) -> None:
    import hashlib

    _, public = generate_key_pair(tmp_path)
    key = load_public_key(public)
    der = base64.b64decode("".join(public.read_text().splitlines()[1:-1]))
    assert keyid(key) == hashlib.sha256(der).hexdigest()
