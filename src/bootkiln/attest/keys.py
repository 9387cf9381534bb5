"""Signing keys: Ed25519 or ECDSA P-256, read from PEM files.

Errors name the file and what is wrong with it, never its bytes: a key must not reach a log.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from bootkiln.errors import InputError

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey

ENV_KEY = "BOOTKILN_SIGNING_KEY"
ENV_PASSWORD = "BOOTKILN_SIGNING_KEY_PASSWORD"  # noqa: S105 - the variable's name, not a password
SUPPORTED = "Ed25519 or ECDSA P-256"
GENERATE_HINT = "make a key pair with `invoke signing-key --output DIR`, or `openssl genpkey -algorithm ed25519`"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist", hint=GENERATE_HINT) from None
    except OSError as exc:
        raise InputError(f"{what} {path} cannot be read: {exc.strerror}") from None


def _check_algorithm(key: object, path: Path, what: str) -> None:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and isinstance(key.curve,
                                                                                             ec.SECP256R1):
        return
    raise InputError(f"{what} {path} is a {type(key).__name__.removeprefix('_')} key; bootkiln signs with "
                     f"{SUPPORTED} only", hint=GENERATE_HINT)


def load_private_key(path: Path) -> PrivateKey:
    """A PEM private key (PKCS#8 or traditional); encrypted ones take BOOTKILN_SIGNING_KEY_PASSWORD."""
    data = _read(path, "signing key")
    password = os.environ.get(ENV_PASSWORD)
    try:
        key = serialization.load_pem_private_key(data, password.encode() if password else None)
    except TypeError:
        raise InputError(f"signing key {path} is encrypted and {ENV_PASSWORD} is not set" if not password else
                         f"signing key {path} is not encrypted, but {ENV_PASSWORD} is set",
                         hint=f"set or unset {ENV_PASSWORD} to match the key file") from None
    except (ValueError, UnsupportedAlgorithm):
        raise InputError(f"signing key {path} is not a PEM private key (or its password is wrong)",
                         hint=GENERATE_HINT) from None
    _check_algorithm(key, path, "signing key")
    assert isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey)
    return key


def load_public_key(path: Path) -> PublicKey:
    """A PEM public key; a private key file is accepted too, and only its public half is used."""
    data = _read(path, "verification key")
    if b"PRIVATE KEY-----" in data:
        return load_private_key(path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise InputError(f"verification key {path} is not a PEM public key",
                         hint="give the .pub.pem file written with the signing key") from None
    _check_algorithm(key, path, "verification key")
    assert isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey)
    return key


def public_pem(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def keyid(key: PublicKey) -> str:
    """The sha256 of the public key's DER SubjectPublicKeyInfo: names a key without revealing anything."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def generate_key_pair(folder: Path, algorithm: str = "ed25519", name: str = "signing") -> tuple[Path, Path]:
    """Write NAME.key (0600, PKCS#8) and NAME.pub.pem into folder; refuse to overwrite an existing key."""
    private_path, public_path = folder / f"{name}.key", folder / f"{name}.pub.pem"
    if private_path.exists():
        raise InputError(f"{private_path} already exists; bootkiln never overwrites a key",
                         hint="choose another --output folder or remove the old key yourself")
    key: PrivateKey
    if algorithm == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "ecdsa-p256":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise InputError(f"unknown key algorithm {algorithm!r}", hint="choose ed25519 or ecdsa-p256")
    folder.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    public_path.write_bytes(public_pem(key.public_key()))
    return private_path, public_path


def configured_key_path(signing_key: str | None, base_dir: Path) -> Path | None:
    """The signing key a build uses: BOOTKILN_SIGNING_KEY, else the profile's signing.key; None: unsigned."""
    from_env = os.environ.get(ENV_KEY, "").strip()
    if from_env:
        return Path(from_env).expanduser()
    if signing_key:
        return (base_dir / Path(signing_key).expanduser()).resolve()
    return None
