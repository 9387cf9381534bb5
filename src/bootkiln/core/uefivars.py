"""UEFI variable stores with Secure Boot keys enrolled, made by virt-firmware's virt-fw-vars (PyPI):
an OVMF store for boot tests of your own key, and the base64 store an AMI's UefiData carries.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from bootkiln.core.runner import Host, Runner
from bootkiln.errors import EnvironmentProblem

PLAIN_OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
# The owner GUID stored with each certificate bootkiln enrols; any fixed value does (it names who enrolled it).
OWNER = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/bootkiln/secureboot-owner"))
# Microsoft's UEFI CAs (2011, which signs Debian's shim, and 2023), not the Windows ones: what a Linux
# image needs in db to boot through shim.
MICROSOFT_DB = "uefi11"


def virt_fw_vars() -> str:
    """virt-fw-vars from bootkiln's own environment first (pip installs it next to the interpreter)."""
    found = shutil.which("virt-fw-vars", path=str(Path(sys.executable).parent)) or shutil.which("virt-fw-vars")
    if found is None:
        raise EnvironmentProblem("virt-fw-vars (virt-firmware) not found",
                                 hint="pip install virt-firmware (bootkiln's dependencies include it)")
    return found


def enrolled_ovmf_vars(runner: Runner, cert: Path, destination: Path) -> Path:
    """Debian's plain OVMF store (no Microsoft keys) with `cert` alone as PK, KEK and db, Secure Boot on:
    the firmware then trusts that key and nothing else, not even Debian's shim."""
    if not PLAIN_OVMF_VARS.is_file():
        raise EnvironmentProblem(f"no plain OVMF variable store ({PLAIN_OVMF_VARS})", hint="apt-get install ovmf")
    owner_cert = [OWNER, str(cert)]
    runner.run([virt_fw_vars(), "--input", str(PLAIN_OVMF_VARS), "--output", str(destination),
                "--set-pk", *owner_cert, "--add-kek", *owner_cert, "--add-db", *owner_cert, "--sb"],
               stage="enrol", where=Host(), hint=f"virt-fw-vars could not enrol {cert} in an OVMF variable store")
    return destination


def aws_uefi_data(runner: Runner, cert: Path | None) -> str:
    """EC2's UefiData: the base64 variable store (python-uefivars' AWS format) with Secure Boot on,
    Microsoft's KEKs and UEFI CAs (so Debian's shim boots) and `cert`, if given, as PK, KEK and in db
    (so a UKI signed with its key boots too). Without `cert`, virt-fw-vars makes a throwaway PK."""
    with tempfile.TemporaryDirectory(prefix="bootkiln-uefidata-") as scratch:
        output = Path(scratch) / "uefi-data.b64"
        keys = ["--enroll-cert", str(cert), "--add-db", OWNER, str(cert)] if cert else \
            ["--enroll-generate", "bootkiln platform key"]
        runner.run([virt_fw_vars(), *keys, "--microsoft-db", MICROSOFT_DB, "--sb", "--output-aws", str(output)],
                   stage="uefi-data", where=Host(), hint="virt-fw-vars could not make the AMI's UEFI variable store")
        return output.read_text().strip()
