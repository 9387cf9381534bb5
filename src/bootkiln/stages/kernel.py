"""kernel stage: a distribution kernel package, unpacked (never installed), cut down to the modules
the profile asks for plus everything they depend on (resolved by modprobe from modules.dep).

Script: scripts/kernel.sh. The package is linux-image-<flavour> from the profile's archive by
default; a profile can name another package, a local .deb, or a sources.list line to take it from.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from bootkiln.core.archguard import require_deb, require_kernel_image, require_modules
from bootkiln.core.archive import fetch_with_retries
from bootkiln.core.runner import Builder
from bootkiln.errors import CommandFailed, InputError
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
    scripts_upload,
)

SCRIPT = "kernel.sh"
UNKNOWN_MODULES_STATUS = 4


def apt_source_state(line: str) -> str:
    """The InRelease hash of a `deb URL suite ...` line, so a changed source changes the key."""
    match = re.match(r"^deb (?:\[[^\]]*\] )?(\S+) (\S+)", line)
    assert match, line  # validated by the profile model
    url = f"{match.group(1).rstrip('/')}/dists/{match.group(2)}/InRelease"
    return hashlib.sha256(fetch_with_retries(url, what=f"kernel.apt_source {line!r}")).hexdigest()


class KernelStage(StageBase):
    name = "kernel"
    requires: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("vmlinuz", "modules.tar", "kernel.txt")

    def outputs_for(self, profile: Profile) -> tuple[str, ...]:
        # Installer profiles also carry the modules of the system they install.
        return (*self.outputs, TARGET_MODULES) if profile.installer.target_modules else self.outputs

    def check(self, profile: Profile) -> None:
        deb = kernel_deb(profile)
        if deb is not None:
            require_deb(deb, profile.debian.architecture, f"{profile.where}: key 'kernel.deb'")

    def key(self, ctx: StageContext, inputs: Inputs) -> str:
        kernel = ctx.profile.kernel
        fingerprint = (
            base_fingerprint(self, inputs)
            .add_json("kernel", kernel.model_dump(mode="json"))
            .add_text("package", kernel_package(ctx.profile))
            .add_text("builder", ctx.builder.image_id)
            .add_json("target_modules", ctx.profile.installer.target_modules)
        )
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
        engine = ctx.runner.engine
        assert engine is not None
        kernel = ctx.profile.kernel
        deb = kernel_deb(ctx.profile)
        extra = {"kernel.deb": (deb.read_bytes(), 0o644)} if deb else {}
        # Lists go in files, not environment variables: a long one would exceed exec's argument limits.
        extra["modules.txt"] = ("".join(f"{name}\n" for name in kernel.modules).encode(), 0o644)
        extra["target-modules.txt"] = ("".join(f"{name}\n" for name in ctx.profile.installer.target_modules)
                                       .encode(), 0o644)
        env = {**archive_env(ctx), "BK_KERNEL_PACKAGE": kernel_package(ctx.profile)}
        upload = scripts_upload(ctx, SCRIPT, extra, extra_apt_lines=[kernel.apt_source] if kernel.apt_source else [])
        with engine.volume(self.name) as volume:
            online = Builder(image=ctx.builder.tag, network="host", volumes={volume: "/work"}, env=env,
                             uploads=[upload])
            ctx.runner.run(["/bootkiln/" + SCRIPT, "fetch"], stage=self.name, where=online,
                           hint=f"could not download {kernel_package(ctx.profile)}; check kernel.* in the profile "
                           "and the mirror")
            try:
                ctx.runner.run(["/bootkiln/" + SCRIPT, "extract"], stage=self.name,
                               where=replace(online, network="none", collect=[("/work/out", scratch)]))
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
        return {"version": facts["version"], "package": facts["package"],
                "package_version": facts["package_version"], "package_sha256": facts["package_sha256"],
                "modules": facts["modules"], "builtin": facts["builtin"]}
