"""The secrets test's scanner finds a key in every form and container it looks into, and nothing else."""

from __future__ import annotations

import gzip
import io
import lzma
import shutil
import subprocess
import tarfile
from pathlib import Path

import pycdlib
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tests.conftest import component_missing
from tests.support.secretscan import Scanner, private_key

from bootkiln.formats.cpio import CpioEntry, write_newc

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def new_key(key_type: str) -> Key:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: Key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def tar_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def iso_of(files: dict[str, bytes]) -> bytes:
    iso = pycdlib.PyCdlib()
    iso.new(rock_ridge="1.09")
    for index, (name, data) in enumerate(files.items()):
        iso.add_fp(io.BytesIO(data), len(data), f"/F{index}.;1", rr_name=name)
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def self_signed(key: Key) -> bytes:
    import datetime as dt

    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_a_key_is_found_in_every_form_and_nesting(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                                  key_type: str) -> None:
    key = new_key(key_type)
    text = pem(key)
    body = b"".join(text.split(b"\n")[1:-2])
    rewrapped = b"\n".join(body[i:i + 76] for i in range(0, len(body), 76))
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    # xz(tar) inside a cpio, inside gzip, inside an ISO; the DER and a re-wrapped PEM at the bottom.
    inner = lzma.compress(tar_of({"etc/ssl/leak.pem": rewrapped, "leak.der": b"junk" + der + b"junk"}))
    initramfs = gzip.compress(write_newc([CpioEntry("payload.tar.xz", "file", mode=0o644, data=inner)], mtime=0))
    iso = iso_of({"initrd.img": initramfs, "cert.pem": self_signed(key), "public.pem": public})
    (tmp_path / "boot.iso").write_bytes(iso)
    (tmp_path / "key.pem").write_bytes(text)
    scanner = Scanner([private_key("the key", text)], tmp_path_factory.mktemp("scratch"))
    scanner.scan_tree(tmp_path)
    scanner.scan_text("log line\n" + text.decode(), "terminal output")
    where = sorted(" -> ".join(finding.location).replace(str(tmp_path), "") for finding in scanner.findings)
    payload = "/boot.iso -> /initrd.img -> (gzip) -> payload.tar.xz -> (xz)"
    # The certificate and the public key share bytes with the key, but no secret ones: not found.
    assert where == [payload, f"{payload} -> etc/ssl/leak.pem", f"{payload} -> leak.der", "/key.pem",
                     "terminal output"]
    assert {finding.key for finding in scanner.findings} == {"the key"}
    assert scanner.unreadable == []
    assert scanner.opened == {"iso9660": 1, "gzip": 1, "cpio": 1, "xz": 1, "tar": 1}


def test_a_key_compressed_inside_an_ext4_image_is_found(tmp_path: Path,
                                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    mke2fs = shutil.which("mke2fs") or shutil.which("mke2fs", path="/usr/sbin:/sbin")
    if mke2fs is None or not shutil.which("debugfs", path="/usr/sbin:/sbin:/usr/bin"):
        component_missing("e2fsprogs", "mke2fs and debugfs are needed to make and read an ext4 image")
    key = new_key("ec")
    tree = tmp_path_factory.mktemp("tree")
    (tree / "boot").mkdir()
    (tree / "boot" / "notes.gz").write_bytes(gzip.compress(b"x" * 5000 + pem(key)))
    image = tmp_path / "fs.img"
    subprocess.run([mke2fs, "-q", "-t", "ext4", "-d", str(tree), str(image), "8M"], check=True)
    scanner = Scanner([private_key("the key", pem(key))], tmp_path_factory.mktemp("scratch"))
    scanner.scan_tree(tmp_path)
    assert [" -> ".join(f.location[1:]) for f in scanner.findings] == ["/boot/notes.gz -> (gzip)"]
    assert scanner.opened == {"ext4": 1, "gzip": 1}
