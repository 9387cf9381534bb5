"""online-tools stage: the pinned list of .debs an online install unpacks before debootstrap.

Script: scripts/online-tools.sh. apt resolves the closure of the tools against the profile's
archive state with an empty dpkg status, and the list keeps each package's pool path, size and
sha256. The installer's initramfs carries the list (a few KB) instead of the tools (megabytes),
fetches them from the mirror at install time and checks each before unpacking it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bootkiln.core.runner import Builder
from bootkiln.stages.base import (
    Inputs,
    StageBase,
    StageContext,
    add_scripts,
    archive_env,
    base_fingerprint,
    scripts_upload,
)

SCRIPT = "online-tools.sh"
# What the installer runs from its in-memory Debian: debootstrap (which needs perl, wget, gpgv
# and the keyring), the disk tools, and GNU tar and xz for the target.
ONLINE_TOOLS = ("debootstrap", "perl-base", "wget", "gpgv", "debian-archive-keyring", "dpkg", "tar", "xz-utils",
                "zstd", "gzip", "coreutils", "dash", "sed", "grep", "mawk", "findutils", "util-linux", "mount",
                "fdisk", "lvm2", "e2fsprogs", "dosfstools", "kmod", "libc-bin")


class OnlineToolsStage(StageBase):
    name = "online-tools"
    requires: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("online-tools.txt",)

    def key(self, ctx: StageContext, inputs: Inputs) -> str:
        fingerprint = (
            base_fingerprint(self, inputs)
            .add_json("tools", list(ONLINE_TOOLS))
            .add_json("archive", ctx.archive.identity())
            .add_text("builder", ctx.builder.image_id)
        )
        return add_scripts(fingerprint, SCRIPT).hexdigest()

    def build(self, ctx: StageContext, inputs: Inputs, scratch: Path) -> dict[str, Any]:
        env = {**archive_env(ctx), "BK_TOOLS": " ".join(ONLINE_TOOLS)}
        ctx.runner.run(["/bootkiln/" + SCRIPT], stage=self.name,
                       where=Builder(image=ctx.builder.tag, network="host", env=env,
                                     uploads=[scripts_upload(ctx, SCRIPT)], collect=[("/work/out", scratch)]),
                       hint="could not resolve the online installer's tools; check the mirror")
        lines = (scratch / "online-tools.txt").read_text().splitlines()
        return {"packages": len(lines), "bytes": sum(int(line.split()[1]) for line in lines)}
