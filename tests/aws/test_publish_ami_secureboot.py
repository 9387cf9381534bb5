"""`publish-ami` of a Secure Boot AMI against moto: what RegisterImage SENT (UefiData with the
profile's certificate and Microsoft's UEFI CA in db, Secure Boot on, TpmSupport), and the settings
refused before anything is uploaded."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from virt.firmware.varstore.aws import AwsVarStore  # type: ignore[import-untyped]

from bootkiln.profile.sbkeys import generate_test_pair
from tests.aws.helpers import Recorder
from tests.aws.test_publish_ami import FAMILY, build, publish, write_profile

# The CA that signs Debian's shim: an AMI's db needs it for the disk image's signed chain.
MICROSOFT_UEFI_CA = b"Microsoft Corporation UEFI CA 2011"


def own_key(tmp_path: Path, folder: str = "") -> str:
    generate_test_pair(tmp_path / folder if folder else tmp_path)
    return '[secureboot]\nkey = "secureboot.key"\ncert = "' + (f"{folder}/" if folder else "") + 'secureboot.crt"\n'


def sent_varstore(recorder: Recorder, tmp_path: Path) -> tuple[dict[str, str], dict[str, bytes]]:
    sent = recorder.only("RegisterImage").form()
    blob = tmp_path / "uefi-data.b64"
    blob.write_text(sent["UefiData"])
    variables = AwsVarStore(str(blob)).get_varlist()
    return sent, {name: bytes(variables[name].data) for name in variables}


def test_a_secure_boot_ami_carries_the_profiles_certificate_and_a_tpm(tmp_path: Path) -> None:
    profile = write_profile(tmp_path, f'ami_name = "{FAMILY}"\nsecure_boot = true\ntpm = true\n{own_key(tmp_path)}')
    build(1)
    recorder = Recorder()
    assert publish(profile, ("before-send.ec2", recorder.hook)) == 0
    sent, variables = sent_varstore(recorder, tmp_path)
    assert sent["BootMode"] == "uefi" and sent["TpmSupport"] == "v2.0"
    base64.b64decode(sent["UefiData"], validate=True)
    cert = x509.load_pem_x509_certificate((tmp_path / "secureboot.crt").read_bytes())
    der = cert.public_bytes(serialization.Encoding.DER)
    assert der in variables["db"] and der in variables["PK"] and der in variables["KEK"]
    assert MICROSOFT_UEFI_CA in variables["db"], "Debian's shim (Microsoft's UEFI CA 2011) must still boot"
    assert variables["SecureBootEnable"] == b"\x01"
    key_line = (tmp_path / "secureboot.key").read_text().splitlines()[3]
    assert all(key_line.encode() not in request.body for request in recorder.sent)


def test_without_secure_boot_nothing_uefi_is_sent(tmp_path: Path) -> None:
    profile = write_profile(tmp_path, f'ami_name = "{FAMILY}"\n{own_key(tmp_path)}')
    build(1)
    recorder = Recorder()
    assert publish(profile, ("before-send.ec2", recorder.hook)) == 0
    body = parse_qs(recorder.only("RegisterImage").body.decode())
    assert "UefiData" not in body and "TpmSupport" not in body


@pytest.mark.parametrize(("boot_mode", "cert", "expected"), [
    ("uefi-preferred", "secureboot.crt", "secure_boot and tpm need boot_mode = 'uefi', not 'uefi-preferred'"),
    ("uefi", "other/secureboot.crt", "not one pair"),
])
def test_wrong_secure_boot_settings_exit_2_before_any_upload(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], boot_mode: str, cert: str, expected: str) -> None:
    generate_test_pair(tmp_path / "other")
    profile = Path(write_profile(tmp_path, f'ami_name = "{FAMILY}"\nsecure_boot = true\ntpm = true\n'
                                           f"{own_key(tmp_path)}"))
    profile.write_text(profile.read_text().replace('boot_mode = "uefi"', f'boot_mode = "{boot_mode}"')
                       .replace('cert = "secureboot.crt"', f'cert = "{cert}"'))
    build(1)
    recorder = Recorder()
    assert publish(str(profile), ("before-send.ec2", recorder.hook), ("before-send.ebs", recorder.hook)) == 2
    output = capsys.readouterr().out
    assert expected in output and "Traceback" not in output
    assert recorder.sent == []
