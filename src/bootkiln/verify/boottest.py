"""`invoke boot-test`: boot the built ISO in QEMU as BIOS CD, BIOS USB, UEFI CD and UEFI USB.

A boot passes when the initramfs prints the marker on the serial console; a failure shows the
last serial lines.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from bootkiln.core.uefivars import enrolled_ovmf_vars
from bootkiln.errors import BootkilnError, Fault, InputError
from bootkiln.formats.arch import ARCHES
from bootkiln.pipeline import Build
from bootkiln.profile.sbkeys import load_keys
from bootkiln.profile.schema import BOOT_MODES, OWN_KEY_MODES, BootMode
from bootkiln.verify.qemu import (
    BootResult,
    boot,
    boots_iso,
    choose_accel,
    find_ovmf,
    is_secure_boot,
    is_uefi,
    qemu_binary,
)

MARKER = "BOOTKILN-BOOT-OK"


class BootFailed(BootkilnError):
    fault = Fault.ENVIRONMENT

    def __init__(self, failures: list[BootResult], timeout: int) -> None:
        names = ", ".join(f"{r.mode} ({'no marker in' if r.tail else 'no output in'} {r.seconds:.0f}s)"
                          for r in failures)
        super().__init__(f"boot test failed: {names}",
                         hint=f"the serial console's last lines are above; boot.timeout is {timeout}s "
                         "(TCG is slow), BOOTKILN_ACCEL=kvm|tcg forces an accelerator")
        self.failures = failures

    def details(self) -> list[str]:
        lines = []
        for result in self.failures:
            lines.append(f"{result.mode}: last serial lines:")
            lines.extend(f"  {line}" for line in result.tail[-15:])
        return lines


def selected_modes(build: Build, requested: list[str]) -> list[BootMode]:
    modes = requested or list(build.profile.boot.modes)
    unknown = [mode for mode in modes if mode not in BOOT_MODES]
    if unknown:
        raise InputError(f"unknown boot mode(s): {', '.join(unknown)}", hint=f"choose from {', '.join(BOOT_MODES)}")
    return [mode for mode in BOOT_MODES if mode in modes]


def on_machine(result: BootResult, uname: str) -> BootResult:
    """A marker from the wrong machine (`uname -m` in it) is a failure: the image booted somewhere else."""
    if result.passed and not any(MARKER in line and f"arch={uname}" in line for line in result.tail[-3:]):
        return replace(result, passed=False, tail=[*result.tail, f"(the marker does not say arch={uname})"])
    return result


def boot_test(build: Build, requested: list[str]) -> list[BootResult]:
    """Build what the selected modes boot (the ISO, the disk image), then boot each to its marker."""
    modes = selected_modes(build, requested)
    arch = build.profile.debian.architecture
    qemu_binary(arch)
    if any(is_uefi(mode) for mode in modes):
        find_ovmf(arch)
    if any(is_secure_boot(mode) for mode in modes):
        find_ovmf(arch, secure_boot=True)
    own_key_modes = [mode for mode in modes if mode in OWN_KEY_MODES]
    keys = load_keys(build.profile) if own_key_modes else None
    if own_key_modes and keys is None:
        raise InputError(f"{build.profile.where}: boot modes {', '.join(own_key_modes)} enrol the profile's own "
                         "Secure Boot certificate, and it names none",
                         hint="set [secureboot] key and cert (docs/secureboot.md), or choose other modes")
    with tempfile.TemporaryDirectory(prefix="bootkiln-enrol-") as scratch:
        # The profile's certificate alone in PK, KEK and db: only images signed with its key boot.
        vars_template = enrolled_ovmf_vars(build.runner, keys.cert, Path(scratch) / "vars.fd") if keys else None
        return _boot_modes(build, modes, vars_template)


def _boot_modes(build: Build, modes: list[BootMode], own_key_vars: Path | None) -> list[BootResult]:
    arch = build.profile.debian.architecture
    images = {}
    if any(boots_iso(mode) for mode in modes):
        images["iso"] = build.iso().artifact("boot.iso")
    if not all(boots_iso(mode) for mode in modes):
        images["disk"] = build.disk().artifact("disk.img")
    accel = choose_accel(build.runner, build.stage("kernel").artifact("vmlinuz"), arch=arch)
    build.reporter.info(f"booting {', '.join(path.name for path in images.values())} with {accel.upper()}"
                        + (" (KVM did not answer the probe)" if accel == "tcg" else ""))
    results = []
    for mode in modes:
        image = images["iso" if boots_iso(mode) else "disk"]
        with build.reporter.stage(f"boot {mode}") as progress:
            # Printed by the initramfs stage, or by the booted system (a diskless client's report).
            result = boot(build.runner, build.reporter, mode, image, marker=MARKER, accel=accel,
                          memory=build.profile.boot.memory, timeout=build.profile.boot.timeout,
                          vars_template=own_key_vars if mode in OWN_KEY_MODES else None, arch=arch)
            result = on_machine(result, ARCHES[arch].uname)
            progress.verb = "passed" if result.passed else "FAILED"
            progress.note = f"marker after {result.seconds:.1f}s ({accel})" if result.passed else "no marker"
        results.append(result)
    for result in results:
        status = "passed" if result.passed else "FAILED"
        build.reporter.info(f"{result.mode:9} {status} in {result.seconds:6.1f}s ({result.accel})")
    failures = [result for result in results if not result.passed]
    if failures:
        raise BootFailed(failures, build.profile.boot.timeout)
    return results
