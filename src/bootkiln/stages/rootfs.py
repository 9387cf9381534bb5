"""rootfs stage: the profile's Debian, bootstrapped with mmdebstrap, overlaid, normalised, tarred.

Script: scripts/rootfs.sh. Overlays: overlays/<name>/ as the profile lists them.
mmdebstrap rather than debootstrap: with SOURCE_DATE_EPOCH set its output is bit-for-bit
reproducible, and it needs no loop devices or host paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bootkiln.core.binfmt import SCRIPT as BINFMT_SCRIPT
from bootkiln.core.binfmt import ensure_binfmt
from bootkiln.core.engine import Upload
from bootkiln.core.overlay import overlay_archive, plan_overlays
from bootkiln.profile.schema import Profile
from bootkiln.stages.base import (
    Inputs,
    StageBase,
    StageContext,
    add_scripts,
    archive_env,
    base_fingerprint,
    fetch_then_make,
    script_path,
    scripts_upload,
)

SCRIPT = "rootfs.sh"


class RootfsStage(StageBase):
    name = "rootfs"
    requires: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("rootfs.tar", "packages.tsv")

    def check(self, profile: Profile) -> None:
        plan_overlays(profile, "rootfs")

    def key(self, ctx: StageContext, inputs: Inputs) -> str:
        fingerprint = (
            base_fingerprint(self, inputs)
            .add_json("debian", ctx.profile.debian.model_dump(mode="json"))
            .add_json("rootfs", ctx.profile.rootfs.model_dump(mode="json"))
            .add_json("archive", ctx.archive.identity())
            .add_text("builder", ctx.builder.image_id)
        )
        add_scripts(fingerprint, SCRIPT)
        if ctx.profile.debian.architecture != ctx.builder.architecture:
            fingerprint.add_file("binfmt", script_path(BINFMT_SCRIPT))
        for entry in plan_overlays(ctx.profile):
            fingerprint.add_json("overlay-entry", entry.as_json())
            if entry.kind == "file":
                fingerprint.add_file("overlay-data", entry.source)
        return fingerprint.hexdigest()

    def env(self, ctx: StageContext) -> dict[str, str]:
        return {**archive_env(ctx), "BK_VARIANT": ctx.profile.debian.variant}

    def uploads(self, ctx: StageContext) -> list[Upload]:
        overlay = overlay_archive(plan_overlays(ctx.profile), ctx.archive.source_date_epoch)
        # A file, not an environment variable: a long list would exceed exec's argument limits.
        packages = "".join(f"{name}\n" for name in ctx.profile.rootfs.packages).encode()
        return [scripts_upload(ctx, SCRIPT, {"overlay.tar": (overlay, 0o644), "packages.txt": (packages, 0o644),
                                             BINFMT_SCRIPT: (script_path(BINFMT_SCRIPT).read_bytes(), 0o755)})]

    def build(self, ctx: StageContext, inputs: Inputs, scratch: Path) -> dict[str, Any]:
        engine = ctx.runner.engine
        assert engine is not None
        # A foreign target's maintainer scripts run under qemu-user: make sure the kernel can, first.
        foreign = ensure_binfmt(ctx.runner, engine, image=ctx.builder.tag, target=ctx.profile.debian.architecture,
                                builder=ctx.builder.architecture, uploads=[scripts_upload(ctx, BINFMT_SCRIPT)])
        fetch_then_make(ctx, self.name, SCRIPT, scratch, env=self.env(ctx), uploads=self.uploads(ctx),
                        fetch=["bootstrap"], fetch_hint=f"mmdebstrap could not bootstrap {ctx.profile.debian.suite} "
                        f"from {ctx.archive.mirror}; check debian.* and rootfs.packages in the profile, and the mirror",
                        make=["finalise"],
                        make_hint="overlaying or normalising the rootfs failed; check the profile's overlays")
        return {"packages": len((scratch / "packages.tsv").read_text().splitlines()), "foreign_binaries": foreign}
