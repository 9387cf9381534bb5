"""kernel stage: a distribution kernel package, unpacked (never installed), cut down to the modules
the profile asks for plus everything they depend on (resolved by modprobe from modules.dep).

Script: scripts/kernel.sh. The package is linux-image-<flavour> from the profile's archive by
default; a profile can name another package, a local .deb, or a sources.list line to take it from.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from bootkiln.core.archguard import require_deb, require_kernel_image, require_modules
from bootkiln.core.archive import fetch_with_retries
from bootkiln.errors import CommandFailed, InputError
from bootkiln.formats.corrupt import CorruptArtifact
from bootkiln.formats.deb import UnreadableDeb, deb_file
from bootkiln.formats.pe import read_pe
from bootkiln.profile.loader import kernel_deb
from bootkiln.profile.schema import Profile, kernel_package
from bootkiln.stages.artifacts import TARGET_MODULES, kernel_facts
from bootkiln.stages.base import (
    Inputs,
    StageBase,
    StageContext,
    add_scripts,
    archive_env,
    base_fingerprint,
    fetch_then_make,
    scripts_upload,
)

SCRIPT = "kernel.sh"
UNKNOWN_MODULES_STATUS = 4
# Always kept: the initramfs mounts efivarfs to read the firmware's SecureBoot variable into its
# boot marker (Debian builds it as a module).
ALWAYS_MODULES = ("efivarfs",)


def selected_modules(profile: Profile) -> list[str]:
    return [*profile.kernel.modules, *(name for name in ALWAYS_MODULES if name not in profile.kernel.modules)]


def apt_source_state(line: str) -> str:
    """The InRelease hash of a `deb URL suite ...` line, so a changed source changes the key."""
    match = re.match(r"^deb (?:\[[^\]]*\] )?(\S+) (\S+)", line)
    assert match, line  # validated by the profile model
    url = f"{match.group(1).rstrip('/')}/dists/{match.group(2)}/InRelease"
    return hashlib.sha256(fetch_with_retries(url, what=f"kernel.apt_source {line!r}")).hexdigest()


def unsigned_kernel(profile: Profile, what: str) -> InputError:
    key = "kernel.deb" if profile.kernel.deb else "kernel.package"
    return InputError(
        f"{profile.where}: key '{key}': {what} carries no Authenticode signature, so Secure Boot firmware "
        "(through shim and the signed GRUB) would refuse to start it",
        hint="use Debian's signed kernel (linux-image-<flavour>, not -unsigned), sign it into the profile's chain, "
        "or set `secureboot = false` in the profile to build an image that boots only with Secure Boot off")


def needs_signed_kernel(profile: Profile) -> bool:
    """GRUB through shim verifies the kernel; a UKI signed with the profile's own key is verified whole,
    and its stub starts the kernel inside it without a second check."""
    return profile.secureboot.enabled and not profile.secureboot.own_keys


def require_signed(profile: Profile, vmlinuz: bytes, what: str) -> None:
    """Under Secure Boot the kernel must carry a signature; whether it verifies is the firmware's call."""
    if not needs_signed_kernel(profile):
        return
    try:
        signed = read_pe(vmlinuz, what).signatures > 0
    except CorruptArtifact:
        signed = False  # no EFI stub at all: no signature either
    if not signed:
        raise unsigned_kernel(profile, what)


class KernelStage(StageBase):
    name = "kernel"
    requires: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("vmlinuz", "modules.tar", "kernel.txt")

    def outputs_for(self, profile: Profile) -> tuple[str, ...]:
        # Installer profiles also carry the modules of the system they install.
        return (*self.outputs, TARGET_MODULES) if profile.installer.target_modules else self.outputs

    def check(self, profile: Profile) -> None:
        deb = kernel_deb(profile)
        if deb is None:
            return
        require_deb(deb, profile.debian.architecture, f"{profile.where}: key 'kernel.deb'")
        # A local kernel.deb can be looked into before any container starts; a package from an
        # archive is checked right after it is unpacked, before any later stage.
        if not needs_signed_kernel(profile):
            return
        try:
            found = deb_file(deb, "./boot/vmlinu[xz]-*")
        except UnreadableDeb:
            return
        except CorruptArtifact as exc:
            raise InputError(f"{profile.where}: key 'kernel.deb': {exc}", hint="give a Debian kernel package") from None
        if found is None:
            raise InputError(f"{profile.where}: key 'kernel.deb': {deb.name} holds no /boot/vmlinuz",
                             hint="give a linux-image package, not a metapackage or headers")
        require_signed(profile, found[1], f"{deb.name}'s {found[0].lstrip('.')}")

    def key(self, ctx: StageContext, inputs: Inputs) -> str:
        kernel = ctx.profile.kernel
        fingerprint = (
            base_fingerprint(self, inputs)
            .add_json("kernel", kernel.model_dump(mode="json"))
            .add_text("package", kernel_package(ctx.profile))
            .add_json("always_modules", ALWAYS_MODULES)
            .add_json("secureboot", ctx.profile.secureboot.enabled)
            .add_text("builder", ctx.builder.image_id)
            .add_json("target_modules", ctx.profile.installer.target_modules)
        )
        if not needs_signed_kernel(ctx.profile):
            # A kernel accepted unsigned must never be reused by a profile that needs a signed one.
            fingerprint.add_text("signature", "not required")
        add_scripts(fingerprint, SCRIPT)
        deb = kernel_deb(ctx.profile)
        if deb is not None:
            fingerprint.add_file("deb", deb)
        elif kernel.apt_source:
            fingerprint.add_text("apt-source", apt_source_state(kernel.apt_source))
        else:
            fingerprint.add_json("archive", ctx.archive.identity())
        return fingerprint.hexdigest()

    def build(self, ctx: StageContext, inputs: Inputs, scratch: Path) -> dict[str, Any]:
        kernel = ctx.profile.kernel
        deb = kernel_deb(ctx.profile)
        extra = {"kernel.deb": (deb.read_bytes(), 0o644)} if deb else {}
        # Lists go in files, not environment variables: a long one would exceed exec's argument limits.
        extra["modules.txt"] = ("".join(f"{name}\n" for name in selected_modules(ctx.profile)).encode(), 0o644)
        extra["target-modules.txt"] = ("".join(f"{name}\n" for name in ctx.profile.installer.target_modules)
                                       .encode(), 0o644)
        env = {**archive_env(ctx), "BK_KERNEL_PACKAGE": kernel_package(ctx.profile)}
        upload = scripts_upload(ctx, SCRIPT, extra, extra_apt_lines=[kernel.apt_source] if kernel.apt_source else [])
        try:
            fetch_then_make(ctx, self.name, SCRIPT, scratch, env=env, uploads=[upload], fetch=["fetch"],
                            fetch_hint=f"could not download {kernel_package(ctx.profile)}; check kernel.* in the "
                            "profile and the mirror", make=["extract"])
        except CommandFailed as failure:
            unknown = [line.split(":", 1)[1].split() for line in failure.tail
                       if line.startswith("UNKNOWN-MODULES:")]
            if failure.status == UNKNOWN_MODULES_STATUS and unknown:
                key = "kernel.modules" if set(unknown[0]) & set(kernel.modules) else "installer.target_modules"
                raise InputError(
                    f"{ctx.profile.where}: key '{key}': the {ctx.profile.debian.architecture} kernel package "
                    f"has no module named {', '.join(repr(m) for m in unknown[0])}",
                    hint="check the spelling (modinfo names, e.g. virtio_blk), or pick another kernel",
                ) from None
            raise
        facts = kernel_facts(scratch / "kernel.txt")
        target = ctx.profile.debian.architecture
        if facts.get("architecture") not in (target, "all"):
            raise InputError(f"{ctx.profile.where}: the kernel package {facts['package']} is for "
                             f"{facts.get('architecture')}, but debian.architecture is {target}",
                             hint="name a kernel package of the target architecture in kernel.package")
        require_kernel_image(scratch / "vmlinuz", target)
        require_modules(scratch / "modules.tar", target)
        require_signed(ctx.profile, (scratch / "vmlinuz").read_bytes(), f"{facts['package']}'s kernel")
        return {"version": facts["version"], "package": facts["package"],
                "package_version": facts["package_version"], "package_sha256": facts["package_sha256"],
                "modules": facts["modules"], "builtin": facts["builtin"]}
