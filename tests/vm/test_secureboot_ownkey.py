"""Secure Boot with your own key: OVMF with only the profile's test certificate enrolled (PK, KEK and
db, through virt-fw-vars) boots the signed Unified Kernel Image with SecureBoot=1 from the ISO (as a CD
and as a USB stick) and from the disk image's ESP; it refuses the same UKI signed with another key, and
one with no signature."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bootkiln.console import Reporter
from bootkiln.core.runner import Runner
from bootkiln.core.uefivars import enrolled_ovmf_vars
from bootkiln.errors import EnvironmentProblem
from bootkiln.formats.pe import read_pe
from bootkiln.profile.schema import OWN_KEY_MODES, BootMode
from bootkiln.stages.artifacts import uki_signed
from bootkiln.verify.boottest import MARKER
from bootkiln.verify.qemu import Accel, boot, find_ovmf
from tests.conftest import component_missing
from tests.fixtures import OwnKeyBuild

REFUSED = "Access Denied"


@pytest.fixture(scope="session")
def own_key_vars(ownkey: OwnKeyBuild, qemu_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A variable store with the session's test certificate alone in PK, KEK and db."""
    try:
        find_ovmf(secure_boot=True)
        return enrolled_ovmf_vars(Runner(Reporter(quiet_output=True)), ownkey.folder / "secureboot.crt",
                             tmp_path_factory.mktemp("enrolled") / "vars.fd")
    except EnvironmentProblem as exc:
        component_missing("OVMF with Secure Boot and virt-fw-vars", f"{exc.message} ({exc.hint})")


def boot_own_key(mode: BootMode, image: Path, vars_template: Path, accel: Accel, marker: str,
                 timeout: float) -> list[str]:
    reporter = Reporter(quiet_output=True)
    result = boot(Runner(reporter), reporter, mode, image, marker=marker, accel=accel, memory=512,
                  timeout=timeout, vars_template=vars_template)
    assert result.passed, f"no {marker!r} on the serial console:\n" + "\n".join(result.tail)
    return result.tail


@pytest.mark.parametrize("mode", OWN_KEY_MODES)
def test_the_uki_signed_with_the_profiles_key_boots_under_secure_boot(
        mode: BootMode, ownkey: OwnKeyBuild, own_key_vars: Path, accel: Accel) -> None:
    disk = mode.startswith("disk-")
    image = ownkey.build.disk().artifact("disk.img") if disk else ownkey.iso
    tail = boot_own_key(mode, image, own_key_vars, accel, f"{MARKER} stage={'root' if disk else 'rescue'}", 300)
    marker = next(line for line in tail if MARKER in line)
    assert "secureboot=1" in marker, f"the firmware's SecureBoot variable was not 1: {marker}"


def test_a_uki_signed_with_another_key_is_refused(ownkey: OwnKeyBuild, own_key_vars: Path, accel: Accel) -> None:
    tail = boot_own_key("uefi-cd-ownkey", ownkey.other_iso, own_key_vars, accel, REFUSED, 180)
    assert not any(MARKER in line for line in tail)


def test_an_unsigned_uki_is_refused(ownkey: OwnKeyBuild, own_key_vars: Path, accel: Accel, tmp_path: Path) -> None:
    """The same ISO with the UKI's certificate table emptied: the firmware finds no signature to check."""
    uki = ownkey.build.stage("ukisign").artifact(uki_signed("iso")).read_bytes()
    info = read_pe(uki)
    assert info.signatures, "the signed UKI carries an Authenticode signature"
    iso = tmp_path / "unsigned-uki.iso"
    shutil.copyfile(ownkey.iso, iso)
    data = bytearray(iso.read_bytes())
    where = data.find(uki[:1 << 16])
    assert where > 0 and data[where:where + len(uki)] == uki, "the UKI is stored contiguously in the ISO"
    data[where + info.dir_entry:where + info.dir_entry + 8] = bytes(8)
    iso.write_bytes(bytes(data))
    tail = boot_own_key("uefi-cd-ownkey", iso, own_key_vars, accel, REFUSED, 180)
    assert not any(MARKER in line for line in tail)
