"""Puppet certificates for the user-data: made here with `cryptography`, or taken from files and checked.

Generated material lives in one folder (BOOTKILN_PKI/<profile>/, by default .cache/pki/<profile>/ in
the checkout; never under out/, whose files get uploaded): a CA, its CRL, and a certificate and key
per certname, all reused on later runs so every host of a profile shares the CA.
Keys are written 0600 and never printed; nothing here goes into an image or an ISO.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr

from bootkiln.atomicfile import write_atomic
from bootkiln.errors import InputError
from bootkiln.installer.userdata import Certificates
from bootkiln.profile.userdata import CertFiles, KeyType

# Puppet's own defaults: a CA lives 15 years, host certificates 5.
CA_LIFETIME = dt.timedelta(days=15 * 365)
HOST_LIFETIME = dt.timedelta(days=5 * 365)
CRL_LIFETIME = dt.timedelta(days=5 * 365)
# Certificates made now are valid from a little earlier, for instances whose clock lags.
CLOCK_SKEW = dt.timedelta(days=1)


@dataclass(frozen=True)
class PkiPaths:
    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def crl(self) -> Path:
        return self.root / "crl.pem"

    def host_cert(self, certname: str) -> Path:
        return self.root / "hosts" / f"{certname}.pem"

    def host_key(self, certname: str) -> Path:
        return self.root / "hosts" / f"{certname}.key"


def _new_key(key_type: KeyType) -> CertificateIssuerPrivateKeyTypes:
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type.removeprefix("rsa-")))


def _key_pem(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    # The traditional "RSA/EC PRIVATE KEY" form is what Puppet agents write and read everywhere.
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, mode: int) -> None:
    """Atomically, and with the mode set before any byte is written (keys are never world-readable)."""
    write_atomic(path, data, mode=mode, private_parent=True)


def _private_folder(root: Path) -> None:
    """The folder of keys: ours, and 0700 (a folder someone else made could be read or swapped by them)."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = root.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise InputError(f"{root} is not a folder of this user's: refusing to keep private keys there",
                         hint="set BOOTKILN_PKI to a folder you own")
    if info.st_mode & 0o077:
        root.chmod(0o700)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _make_ca(paths: PkiPaths, server: str, key_type: KeyType, now: dt.datetime) -> None:
    key = _new_key(key_type)
    subject = _name(f"Puppet CA: {server}")
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write(paths.ca_key, _key_pem(key), 0o600)
    _write(paths.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    # Whatever the old CA signed is worthless now.
    paths.crl.unlink(missing_ok=True)
    shutil.rmtree(paths.root / "hosts", ignore_errors=True)


def _load_ca(paths: PkiPaths) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]:
    cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise InputError(f"{paths.ca_key}: unsupported CA key type {type(key).__name__}",
                         hint=f"remove {paths.root} to generate a new CA")
    return cert, key


def _make_crl(paths: PkiPaths, ca: x509.Certificate, ca_key: CertificateIssuerPrivateKeyTypes,
              now: dt.datetime) -> None:
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
           .last_update(now - CLOCK_SKEW).next_update(now + CRL_LIFETIME)
           .add_extension(x509.CRLNumber(1), critical=False)
           .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
           .sign(ca_key, hashes.SHA256()))
    _write(paths.crl, crl.public_bytes(serialization.Encoding.PEM), 0o644)


def _make_host(paths: PkiPaths, certname: str, hostname: str, key_type: KeyType, ca: x509.Certificate,
               ca_key: CertificateIssuerPrivateKeyTypes, now: dt.datetime) -> None:
    key = _new_key(key_type)
    names = [x509.DNSName(certname)] + ([x509.DNSName(hostname)] if hostname != certname else [])
    cert = (x509.CertificateBuilder().subject_name(_name(certname)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + HOST_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(paths.host_key(certname), _key_pem(key), 0o600)
    _write(paths.host_cert(certname), cert.public_bytes(serialization.Encoding.PEM), 0o644)


def generate(root: Path, *, certname: str, hostname: str, server: str, key_type: KeyType,
             now: dt.datetime | None = None) -> Certificates:
    """The CA (made once), its CRL (remade when it has expired) and this certname's certificate and key."""
    now = now or dt.datetime.now(dt.UTC)
    paths = PkiPaths(root)
    _private_folder(root)
    if not (paths.ca_cert.is_file() and paths.ca_key.is_file()):
        _make_ca(paths, server, key_type, now)
    ca, ca_key = _load_ca(paths)
    existing = x509.load_pem_x509_crl(paths.crl.read_bytes()) if paths.crl.is_file() else None
    if existing is None or existing.next_update_utc is None or existing.next_update_utc <= now:
        _make_crl(paths, ca, ca_key, now)
    if not (paths.host_cert(certname).is_file() and paths.host_key(certname).is_file()):
        _make_host(paths, certname, hostname, key_type, ca, ca_key, now)
    certs = Certificates(ca=paths.ca_cert.read_text(), crl=paths.crl.read_text(),
                         cert=paths.host_cert(certname).read_text(),
                         key=SecretStr(paths.host_key(certname).read_text()))
    verify(certs, certname=certname, where=str(root), now=now)
    return certs


def load(files: CertFiles, base_dir: Path, *, certname: str, where: str) -> Certificates:
    """Existing certificates named by the profile (relative to it), checked as a set."""
    texts: dict[str, str] = {}
    paths = {part: base_dir / getattr(files, part) for part in ("ca", "crl", "cert", "key")}
    for part, path in paths.items():
        try:
            texts[part] = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{where}: key 'userdata.certs.{part}': cannot read {path}: {exc}",
                             hint="give a PEM file, relative to the profile") from None
    try:
        certs = Certificates(ca=texts["ca"], crl=texts["crl"], cert=texts["cert"], key=SecretStr(texts["key"]))
    except ValueError as exc:
        raise InputError(f"{where}: key 'userdata.certs': {_first_error(exc, paths)}",
                         hint="each file holds unencrypted PEM: the CA certificate(s), the CRL, the host "
                              "certificate and its private key") from None
    verify(certs, certname=certname, where=where)
    return certs


def _first_error(exc: ValueError, paths: dict[str, Path]) -> str:
    """Pydantic's messages, each naming the file it is about; never the rejected value (it may be a key)."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    problems = []
    for error in errors():
        part = str(error["loc"][0]) if error["loc"] else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{paths[part]}: {message}" if part in paths else message)
    return "; ".join(problems)


def verify(certs: Certificates, *, certname: str, where: str, now: dt.datetime | None = None) -> None:
    """The set must work together: Puppet would reject the host otherwise, long after the instance booted."""
    now = now or dt.datetime.now(dt.UTC)

    def bad(problem: str, hint: str = "") -> InputError:
        return InputError(f"{where}: certificates: {problem}", hint=hint or "check the files named by userdata.certs")

    try:
        cas = x509.load_pem_x509_certificates(certs.ca.encode())
        crl = x509.load_pem_x509_crl(certs.crl.encode())
        cert = x509.load_pem_x509_certificate(certs.cert.encode())
        key = serialization.load_pem_private_key(certs.key.get_secret_value().encode(), password=None)
    except (ValueError, TypeError) as exc:
        # Never echo key material: cryptography's messages don't, and neither does this.
        raise bad(f"cannot parse: {exc}") from None
    issuer = next((ca for ca in cas if ca.subject == cert.issuer), None)
    if issuer is None:
        raise bad(f"the host certificate was issued by {cert.issuer.rfc4514_string()}, which is not in the CA file")
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        raise bad("the host certificate's signature does not verify against the CA") from None
    crl_issuer = next((ca for ca in cas if ca.subject == crl.issuer), None)
    if crl_issuer is None or not crl.is_signature_valid(crl_issuer.public_key()):  # type: ignore[arg-type]
        raise bad("the CRL is not signed by the CA")
    if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
        raise bad(f"the host certificate (serial {cert.serial_number:x}) is revoked by the CRL")
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*public) != cert.public_key().public_bytes(*public):
        raise bad("the private key does not belong to the host certificate")
    common_names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if common_names != [certname]:
        raise bad(f"the host certificate is for {common_names}, but the Puppet certname is {certname!r}",
                  hint="set userdata.puppet.certname to the certificate's name, or give this host's certificate")
    if cert.not_valid_after_utc <= now:
        raise bad(f"the host certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}")
