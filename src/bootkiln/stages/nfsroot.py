"""nfsroot stage: a diskless client's root tree, from the built rootfs or an existing root folder.

Script: scripts/nfsroot.sh. Overlay: overlays/diskless/ (a template: files ending in .in are filled
in from the profile's [nfsroot] table). The tree is the source minus the profile's exclusions, with
the client's /etc (fstab with /usr and /home read-only over NFS and tmpfs /var and /tmp, remote
syslog, no hostname of its own so DHCP names it) and a populate-var service that lays out /var at
boot from the skeleton recorded here. The stage also writes the server's export definitions.
"""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path
from string import Template
from typing import Any

from bootkiln.core.engine import Upload
from bootkiln.core.overlay import OverlayEntry, overlay_archive, plan_tree
from bootkiln.core.runner import Builder
from bootkiln.errors import InputError
from bootkiln.profile.loader import overlay_dir
from bootkiln.profile.schema import NfsrootSettings, Profile, require_nfsroot
from bootkiln.stages.base import Inputs, StageBase, StageContext, add_scripts, base_fingerprint, scripts_upload

SCRIPT = "nfsroot.sh"


def template_values(settings: NfsrootSettings) -> dict[str, str]:
    return {
        "nfsroot": settings.nfsroot or "",
        "usr": settings.mount_for("/usr"),
        "home": settings.mount_for("/home"),
        "mount_options": f"vers={settings.version},{settings.options}".rstrip(","),
        "syslog": settings.syslog or settings.server,
        "server": settings.server,
        "device": settings.device,
    }


def render_overlay(profile: Profile, epoch: int) -> bytes:
    """The diskless overlay as a tar, with every *.in template filled in and renamed."""
    settings = require_nfsroot(profile)
    values = template_values(settings)
    planned = plan_tree(profile, settings.overlays, {}, "nfsroot.overlays")
    rendered: list[OverlayEntry] = []
    other_mode = {"nfs": ".iso.in", "iso": ".nfs.in"}[settings.root]
    with tempfile.TemporaryDirectory(prefix="bootkiln-template-") as scratch:
        for entry in planned:
            if entry.path.endswith(other_mode):
                continue  # a template for the other kind of client (NFS root or live)
            if entry.kind == "file" and entry.path.endswith(".in"):
                try:
                    text = Template(entry.source.read_text()).substitute(values)
                except (KeyError, ValueError) as exc:
                    raise InputError(f"{entry.source}: template needs {exc}, which [nfsroot] does not provide",
                                     hint=f"templates may use: {', '.join(sorted(values))}") from None
                target = Path(scratch) / entry.path.lstrip("/").replace("/", "_")
                target.write_text(text)
                name = entry.path.removesuffix(".in").removesuffix(f".{settings.root}")
                rendered.append(OverlayEntry(name, "file", entry.mode, entry.uid, entry.gid, target))
            else:
                rendered.append(entry)
        return overlay_archive(sorted(rendered, key=lambda e: e.path), epoch)


def excluded(settings: NfsrootSettings) -> list[str]:
    """A live client has no server to mount /usr and /home from: it carries them in its squashfs."""
    if settings.root == "nfs":
        return settings.exclude
    return [pattern for pattern in settings.exclude if pattern not in ("/usr/*", "/home/*")]


def ganesha_exports(settings: NfsrootSettings) -> str:
    """Export blocks for NFS-Ganesha (FSAL VFS), as the tests serve the client."""
    blocks = []
    for export_id, (location, access) in enumerate(
            [(settings.nfsroot or "", "RO"), (settings.mount_for("/usr"), "RO"), (settings.mount_for("/home"), "RO")],
            start=1):
        path = location.rsplit(":", 1)[1]
        blocks.append(f"EXPORT {{\n  Export_Id = {export_id};\n  Path = {path};\n  Pseudo = {path};\n"
                      f"  Access_Type = {access};\n  Squash = No_Root_Squash;\n  Protocols = 3, 4;\n"
                      "  Transports = TCP;\n  FSAL { Name = VFS; }\n}\n")
    return "".join(blocks)


def kernel_exports(settings: NfsrootSettings) -> str:
    """The same exports in /etc/exports form, for a server with the kernel's nfsd."""
    lines = [f"{location.rsplit(':', 1)[1]}\t*(ro,no_root_squash,no_subtree_check,insecure)\n"
             for location in (settings.nfsroot or "", settings.mount_for("/usr"), settings.mount_for("/home"))]
    return "".join(lines)


def source_archive(folder: Path, destination: Path) -> None:
    """Tar an existing root folder (as a server copies its own root), owners and modes as they are."""
    with tarfile.open(destination, "w", format=tarfile.PAX_FORMAT) as archive:
        archive.add(folder, arcname=".", recursive=True)


class NfsrootStage(StageBase):
    name = "nfsroot"
    requires: tuple[str, ...] = ("rootfs",)
    outputs: tuple[str, ...] = ("nfsroot.tar", "var-skeleton.txt", "ganesha-exports.conf", "exports")

    def requires_for(self, profile: Profile) -> tuple[str, ...]:
        return () if profile.nfsroot.source else self.requires

    def outputs_for(self, profile: Profile) -> tuple[str, ...]:
        return (*self.outputs, "root.squashfs") if profile.nfsroot.root == "iso" else self.outputs

    def check(self, profile: Profile) -> None:
        settings = require_nfsroot(profile)
        plan_tree(profile, settings.overlays, {}, "nfsroot.overlays")

    def key(self, ctx: StageContext, inputs: Inputs) -> str:
        settings = require_nfsroot(ctx.profile)
        fingerprint = (
            base_fingerprint(self, inputs)
            .add_json("nfsroot", settings.model_dump(mode="json"))
            .add_text("builder", ctx.builder.image_id)
            .add_text("epoch", str(ctx.archive.source_date_epoch))
        )
        if settings.source:
            fingerprint.add_tree("source", Path(settings.source))
        for name in settings.overlays:
            fingerprint.add_tree(f"overlay:{name}", overlay_dir(ctx.profile, name, "nfsroot.overlays"))
        return add_scripts(fingerprint, SCRIPT).hexdigest()

    def build(self, ctx: StageContext, inputs: Inputs, scratch: Path) -> dict[str, Any]:
        settings = require_nfsroot(ctx.profile)
        epoch = ctx.archive.source_date_epoch
        extra = {"overlay.tar": (render_overlay(ctx.profile, epoch), 0o644),
                 "exclude": ("".join(f"{pattern}\n" for pattern in excluded(settings)).encode(), 0o644)}
        with tempfile.TemporaryDirectory(prefix="bootkiln-nfsroot-") as folder:
            bundle = Path(folder) / "inputs.tar"
            with tarfile.open(bundle, "w") as archive:
                if settings.source:
                    source = Path(folder) / "source.tar"
                    source_archive(Path(settings.source), source)
                    archive.add(source, arcname="bootkiln/in/source.tar")
                else:
                    archive.add(inputs["rootfs"].artifact("rootfs.tar"), arcname="bootkiln/in/source.tar")
            ctx.runner.run(["/bootkiln/" + SCRIPT], stage=self.name,
                           where=Builder(image=ctx.builder.tag, network="none",
                                         env={"SOURCE_DATE_EPOCH": str(epoch), "BK_ROOT": settings.root},
                                         uploads=[scripts_upload(ctx, SCRIPT, extra), Upload("/", bundle)],
                                         collect=[("/work/out", scratch)]),
                           hint="making the client tree failed; check [nfsroot] in the profile")
        (scratch / "ganesha-exports.conf").write_text(ganesha_exports(settings))
        (scratch / "exports").write_text(kernel_exports(settings))
        skeleton = (scratch / "var-skeleton.txt").read_text().splitlines()
        return {"var_entries": len(skeleton), "nfsroot": settings.nfsroot, "root": settings.root}

