"""Puppet certificates: generated once and reused, or taken from files and checked as a set."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bootkiln.commands import installer as installer_commands
from bootkiln.errors import InputError
from bootkiln.installer import pki
from bootkiln.installer.userdata import Certificates
from bootkiln.profile.userdata import CertFiles

WriteProfile = Callable[[str], Path]

HOST = "web1.example.com"


def generated(root: Path, certname: str = HOST) -> Certificates:
    return pki.generate(root, certname=certname, hostname=certname, server="puppet.example.com", key_type="ec-p256")


def test_generated_set_verifies_and_is_reused(tmp_path: Path) -> None:
    first = generated(tmp_path / "pki")
    ca = x509.load_pem_x509_certificate(first.ca.encode())
    cert = x509.load_pem_x509_certificate(first.cert.encode())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.rfc4514_string() == f"CN={HOST}"
    assert ca.subject.rfc4514_string() == "CN=Puppet CA: puppet.example.com"
    assert x509.load_pem_x509_crl(first.crl.encode()).is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert first.key.get_secret_value().startswith("-----BEGIN EC PRIVATE KEY-----")
    for key in (tmp_path / "pki" / "ca.key", tmp_path / "pki" / "hosts" / f"{HOST}.key"):
        assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "pki").stat().st_mode & 0o777 == 0o700

    assert generated(tmp_path / "pki") == first, "a second run reuses the CA, the CRL and the host's certificate"
    other = generated(tmp_path / "pki", "db1.example.com")
    assert other.ca == first.ca and other.cert != first.cert


def test_rsa_keys_are_generated_in_the_traditional_form(tmp_path: Path) -> None:
    certs = pki.generate(tmp_path, certname=HOST, hostname=HOST, server="p.example.com", key_type="rsa-2048")
    assert certs.key.get_secret_value().startswith("-----BEGIN RSA PRIVATE KEY-----")


def write_files(tmp_path: Path, **override: str) -> CertFiles:
    source = generated(tmp_path / "source")
    texts = {"ca": source.ca, "crl": source.crl, "cert": source.cert, "key": source.key.get_secret_value(),
             **override}
    for name, text in texts.items():
        (tmp_path / f"{name}.pem").write_text(text)
    return CertFiles(ca="ca.pem", crl="crl.pem", cert="cert.pem", key="key.pem")


def test_existing_files_are_loaded_and_checked(tmp_path: Path) -> None:
    certs = pki.load(write_files(tmp_path), tmp_path, certname=HOST, where="p.toml")
    assert certs.cert.startswith("-----BEGIN CERTIFICATE-----")


def _other_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _encrypted_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.BestAvailableEncryption(b"pw")).decode()


@pytest.mark.parametrize(("part", "text", "message"), [
    ("key", _other_key_pem(), "the private key does not belong to the host certificate"),
    ("key", _encrypted_key_pem(), "encrypted key: the installer cannot decrypt it"),
    ("crl", "not pem\n", "certs.crl: not a plain PEM X509 CRL"),
])
def test_a_set_that_does_not_fit_together_is_refused(tmp_path: Path, part: str, text: str, message: str) -> None:
    files = write_files(tmp_path, **{part: text})
    with pytest.raises(InputError, match=message):
        pki.load(files, tmp_path, certname=HOST, where="p.toml")


def test_a_certificate_of_another_ca_or_name_is_refused(tmp_path: Path) -> None:
    foreign = generated(tmp_path / "foreign")
    files = write_files(tmp_path, cert=foreign.cert, key=foreign.key.get_secret_value())
    with pytest.raises(InputError, match=r"which is not in the CA file|does not verify against the CA"):
        pki.load(files, tmp_path, certname=HOST, where="p.toml")
    files = write_files(tmp_path)
    with pytest.raises(InputError, match=r"the host certificate is for \['web1.example.com'\], but the Puppet "
                                         "certname is 'db1.example.com'"):
        pki.load(files, tmp_path, certname="db1.example.com", where="p.toml")


def test_a_revoked_certificate_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "pki"
    certs = generated(root)
    ca = x509.load_pem_x509_certificate(certs.ca.encode())
    ca_key = serialization.load_pem_private_key((root / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    serial = x509.load_pem_x509_certificate(certs.cert.encode()).serial_number
    now = dt.datetime.now(dt.UTC)
    revoked = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject).last_update(now)
           .next_update(now + dt.timedelta(days=1)).add_revoked_certificate(revoked).sign(ca_key, hashes.SHA256()))
    files = write_files(tmp_path, ca=certs.ca, cert=certs.cert, key=certs.key.get_secret_value(),
                        crl=crl.public_bytes(serialization.Encoding.PEM).decode())
    with pytest.raises(InputError, match="is revoked by the CRL"):
        pki.load(files, tmp_path, certname=HOST, where="p.toml")


def test_a_missing_file_names_its_key(tmp_path: Path) -> None:
    files = write_files(tmp_path)
    (tmp_path / "crl.pem").unlink()
    with pytest.raises(InputError, match=r"key 'userdata.certs.crl': cannot read .*crl.pem"):
        pki.load(files, tmp_path, certname=HOST, where="p.toml")


def test_a_crl_that_grew_past_the_budget_is_refused_with_the_figures(
        write_profile: WriteProfile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A realistic way to outgrow 16 KB: a long-lived CA whose CRL lists hundreds of revoked hosts."""
    monkeypatch.setenv("BOOTKILN_OUT", str(tmp_path / "out"))
    root = tmp_path / "pki"
    certs = generated(root)
    ca = x509.load_pem_x509_certificate(certs.ca.encode())
    ca_key = serialization.load_pem_private_key((root / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = dt.datetime.now(dt.UTC)
    builder = x509.CertificateRevocationListBuilder().issuer_name(ca.subject).last_update(now).next_update(
        now + dt.timedelta(days=7))
    for _ in range(1000):
        builder = builder.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(
            int.from_bytes(os.urandom(16), "big") >> 1).revocation_date(now).build())
    crl = builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
    for name, text in {"ca": certs.ca, "crl": crl, "cert": certs.cert, "key": certs.key.get_secret_value()}.items():
        (tmp_path / f"{name}.pem").write_text(text)
    profile = write_profile('[userdata]\nhostname = "web1.example.com"\n'
                            'certs = { ca = "ca.pem", crl = "crl.pem", cert = "cert.pem", key = "key.pem" }\n'
                            '[userdata.puppet]\nserver = "puppet.example.com"\n')
    assert installer_commands.userdata(str(profile)) == 2
    output = capsys.readouterr().out
    assert "error (bad input): user-data is" in output and "over EC2's 16,384-byte limit by" in output
    assert "hint: the largest part is crl" in output
    crl_row = next(line for line in output.splitlines() if line.strip().startswith("crl"))
    assert len(crl_row.split()) == 4
    assert not (tmp_path / "out" / "profile" / "userdata").exists(), "an over-size document is not written"
