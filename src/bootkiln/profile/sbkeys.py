"""Your own Secure Boot key pair: an RSA private key and its X.509 certificate, both PEM.

Read on the host before any container starts, to refuse a wrong pair early. Errors name the file and
what is wrong with it, never its bytes; only the certificate's fingerprint is ever recorded.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from bootkiln.atomicfile import write_atomic
from bootkiln.errors import InputError
from bootkiln.profile.loader import secureboot_files
from bootkiln.profile.schema import Profile

KEY_NAME, CERT_NAME = "secureboot.key", "secureboot.crt"
HINT = "make a test pair with `invoke secureboot-key --output DIR` (RSA 2048 and a self-signed certificate)"
# UEFI firmware verifies RSA-2048 signatures (UEFI spec, 32.5); larger keys are refused by some firmware.
MIN_BITS = 2048


@dataclass(frozen=True)
class SecureBootKeys:
    key: Path
    cert: Path
    fingerprint: str  # SHA-256 of the certificate's DER, lower-case hex

    def describe(self) -> dict[str, str]:
        """What the manifest records: the certificate, never the key."""
        return {"cert": self.cert.name, "cert_sha256": self.fingerprint}


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{what} {path} cannot be read: {exc.strerror}", hint=HINT) from None


def load_keys(profile: Profile) -> SecureBootKeys | None:
    """The profile's checked key pair, or None when it uses Debian's signed chain."""
    paths = secureboot_files(profile)
    if paths is None:
        return None
    key_path, cert_path = paths
    where = f"{profile.where}: key 'secureboot.key': {key_path}"
    try:
        key = serialization.load_pem_private_key(_read(key_path, f"{profile.where}: key 'secureboot.key':"), None)
    except TypeError:
        raise InputError(f"{where} is encrypted; sbsign needs an unencrypted key",
                         hint="keep the key unencrypted in a folder only you can read (mode 0600)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise InputError(f"{where} is not a PEM private key", hint=HINT) from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_BITS:
        raise InputError(f"{where} is not an RSA key of at least {MIN_BITS} bits, which UEFI firmware verifies",
                         hint=HINT)
    cert_where = f"{profile.where}: key 'secureboot.cert': {cert_path}"
    try:
        cert = x509.load_pem_x509_certificate(_read(cert_path, f"{profile.where}: key 'secureboot.cert':"))
    except ValueError:
        raise InputError(f"{cert_where} is not a PEM X.509 certificate", hint=HINT) from None
    if cert.public_key() != key.public_key():
        raise InputError(f"{where} does not match the certificate {cert_path} (secureboot.cert): they are not one pair",
                         hint="give the certificate made for this key, or make a new pair with "
                         "`invoke secureboot-key --output DIR`")
    return SecureBootKeys(key_path, cert_path, cert.fingerprint(hashes.SHA256()).hex())


def generate_test_pair(folder: Path, common_name: str = "bootkiln Secure Boot test key") -> tuple[Path, Path]:
    """secureboot.key (0600, RSA 2048) and secureboot.crt (self-signed, 10 years); never overwrites."""
    key_path, cert_path = folder / KEY_NAME, folder / CERT_NAME
    for path in (key_path, cert_path):
        if path.exists():
            raise InputError(f"{path} already exists; bootkiln never overwrites a key or certificate",
                             hint="choose another --output folder or remove the old files yourself")
    key = rsa.generate_private_key(public_exponent=65537, key_size=MIN_BITS)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), mode=0o600)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path
