"""Your own Secure Boot key: the test pair `invoke secureboot-key` makes, and every way a key and
certificate can be wrong, refused in preflight (exit 2, before any container) naming the key and
never printing its bytes."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bootkiln.errors import InputError
from bootkiln.pipeline import preflight, stages_for
from bootkiln.profile.loader import load_profile
from bootkiln.profile.sbkeys import generate_test_pair, load_keys
from bootkiln.stages.artifacts import seeded_uuid

ROOT = Path(__file__).resolve().parents[2]


def own_key_profile(folder: Path, key: str = "secureboot.key", cert: str = "secureboot.crt",
                    extra: str = "") -> Path:
    path = folder / "ownkey.toml"
    path.write_text(f'name = "ownkey"\n{extra}\n[secureboot]\nkey = "{key}"\ncert = "{cert}"\n')
    return path


def key_body(path: Path) -> str:
    """A line from the middle of a PEM key: what must never show up in a message."""
    return path.read_text().splitlines()[3]


def test_the_test_pair_is_rsa_2048_private_and_never_overwritten(tmp_path: Path) -> None:
    key, cert = generate_test_pair(tmp_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    private = serialization.load_pem_private_key(key.read_bytes(), None)
    assert certificate.public_key() == private.public_key() and private.key_size == 2048  # type: ignore[union-attr]
    before = key.read_bytes()
    with pytest.raises(InputError, match="never overwrites"):
        generate_test_pair(tmp_path)
    assert key.read_bytes() == before


def test_a_matching_pair_gives_the_certificates_fingerprint_and_the_uki_stages(tmp_path: Path) -> None:
    _, cert = generate_test_pair(tmp_path)
    profile = load_profile(str(own_key_profile(tmp_path)))
    keys = load_keys(profile)
    assert keys is not None
    expected = x509.load_pem_x509_certificate(cert.read_bytes()).fingerprint(hashes.SHA256()).hex()
    assert keys.describe() == {"cert": "secureboot.crt", "cert_sha256": expected}
    assert "key" not in keys.describe()
    assert stages_for(profile, ("iso",))[-4:] == ["uki", "ukisign", "bootloader", "iso"]
    assert "uki" not in stages_for(load_profile(None), ("iso",))
    preflight(profile)


def test_a_key_and_a_certificate_of_different_pairs_are_refused(tmp_path: Path) -> None:
    key, _ = generate_test_pair(tmp_path)
    generate_test_pair(tmp_path / "other")
    profile = load_profile(str(own_key_profile(tmp_path, cert="other/secureboot.crt")))
    with pytest.raises(InputError) as caught:
        preflight(profile)
    assert "secureboot.key" in caught.value.message and "not one pair" in caught.value.message
    assert key_body(key) not in str(caught.value.message) + str(caught.value.hint)


@pytest.mark.parametrize(("what", "content", "expected"), [
    ("garbage", b"-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n",
     "not a PEM private key"),
    ("ecdsa", ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
     "not an RSA key"),
])
def test_a_key_that_is_not_an_rsa_pem_key_is_refused(tmp_path: Path, what: str, content: bytes,
                                                     expected: str) -> None:
    generate_test_pair(tmp_path)
    (tmp_path / "bad.key").write_bytes(content)
    with pytest.raises(InputError, match=expected) as caught:
        preflight(load_profile(str(own_key_profile(tmp_path, key="bad.key"))))
    assert "'secureboot.key'" in caught.value.message


def test_a_certificate_that_is_not_one_is_refused(tmp_path: Path) -> None:
    generate_test_pair(tmp_path)
    (tmp_path / "bad.crt").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(InputError, match=r"not a PEM X\.509 certificate"):
        preflight(load_profile(str(own_key_profile(tmp_path, cert="bad.crt"))))


def test_key_files_outside_the_profiles_folder_or_missing_are_refused(tmp_path: Path) -> None:
    generate_test_pair(tmp_path / "elsewhere")
    (tmp_path / "profile").mkdir()
    with pytest.raises(InputError, match="outside the folders a profile may use"):
        preflight(load_profile(str(own_key_profile(tmp_path / "profile", key="../elsewhere/secureboot.key",
                                                   cert="../elsewhere/secureboot.crt"))))
    with pytest.raises(InputError, match=r"'secureboot\.key'.*not found"):
        preflight(load_profile(str(own_key_profile(tmp_path / "profile"))))


def test_a_key_without_a_certificate_is_a_profile_error(tmp_path: Path) -> None:
    path = tmp_path / "half.toml"
    path.write_text('[secureboot]\nkey = "secureboot.key"\n')
    with pytest.raises(InputError, match="key and cert go together"):
        load_profile(str(path))


def test_check_profile_exits_2_naming_the_key_without_its_bytes(tmp_path: Path) -> None:
    key, _ = generate_test_pair(tmp_path)
    generate_test_pair(tmp_path / "other")
    profile = own_key_profile(tmp_path, cert="other/secureboot.crt")
    done = subprocess.run([sys.executable, "-m", "invoke", "check-profile", "--profile", str(profile)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "secureboot.key" in output and "Traceback" not in output
    assert key_body(key) not in output


@pytest.mark.parametrize("seed", ["default", "ownkey", "a seed with spaces"])
def test_the_disk_ukis_root_uuid_is_the_one_disk_sh_makes(seed: str) -> None:
    """The disk's UKI carries root=UUID=... computed on the host; disk.sh derives the filesystem's UUID."""
    script = (ROOT / "scripts" / "disk.sh").read_text()
    functions = "\n".join(script[script.index("hex_of() {"):script.index("DISK_GUID=")].splitlines())
    done = subprocess.run(["bash", "-c", f'{functions}\nBK_SEED="$1"; uuid_of ext4-uuid', "bash", seed],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == seeded_uuid(seed, "ext4-uuid")
