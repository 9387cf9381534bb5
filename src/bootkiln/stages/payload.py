"""payload stage: what an installer profile carries for an offline install.

Script: scripts/payload.sh. The profile's rootfs and the installed system's kernel modules, each
xz-compressed in the builder (one thread, fixed preset: the same bytes on any machine), and
payload.txt, which names every file with its size and sha256 so the installer can check the medium
before it writes anything to a disk.
"""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path
from typing import Any

from bootkiln.core.engine import Upload
from bootkiln.core.runner import Builder
from bootkiln.errors import InputError
from bootkiln.profile.schema import Profile
from bootkiln.stages.artifacts import PAYLOAD_FILES, TARGET_MODULES
from bootkiln.stages.base import Inputs, StageBase, StageContext, add_scripts, base_fingerprint, scripts_upload

SCRIPT = "payload.sh"
# The installer runs grub-install from the payload's rootfs for the machine's firmware: amd64 for
# BIOS and UEFI, arm64 for UEFI only (overlays/initramfs-base/lib/bootkiln/installer-lib.sh).
GRUB_FOR = {"amd64": ("grub-pc-bin", "grub-efi-amd64-bin"), "arm64": ("grub-efi-arm64-bin",)}


class PayloadStage(StageBase):
    name = "payload"
    requires: tuple[str, ...] = ("rootfs", "kernel")
    outputs: tuple[str, ...] = PAYLOAD_FILES

    def check(self, profile: Profile) -> None:
        arch = profile.debian.architecture
        packages = profile.rootfs.packages
        wanted = GRUB_FOR[arch]
        foreign = sorted({name for other, names in GRUB_FOR.items() if other != arch for name in names}
                         & set(packages) - set(wanted))
        if foreign or not set(wanted) <= set(packages):
            found = f"it lists {', '.join(foreign)}, which {arch} has no use for" if foreign else \
                f"it lacks {', '.join(name for name in wanted if name not in packages)}"
            raise InputError(f"{profile.where}: key 'rootfs.packages': an offline install on {arch} runs "
                             f"grub-install from this rootfs; {found}",
                             hint=f"list {' and '.join(wanted)} for {arch} (as profiles/installer"
                                  f"{'' if arch == 'amd64' else '-' + arch}.toml does), or set "
                                  "installer.payload = false")
        if not profile.installer.target_modules:
            raise InputError(f"{profile.where}: key 'installer.target_modules': empty, so an "
                             "offline install would give the installed system no kernel modules (no disk, network "
                             "or filesystem drivers)",
                             hint="list them as profiles/installer.toml does, or set installer.payload = false")

    def key(self, ctx: StageContext, inputs: Inputs) -> str:
        fingerprint = (
            base_fingerprint(self, inputs)
            .add_text("builder", ctx.builder.image_id)
            .add_text("epoch", str(ctx.archive.source_date_epoch))
        )
        return add_scripts(fingerprint, SCRIPT).hexdigest()

    def build(self, ctx: StageContext, inputs: Inputs, scratch: Path) -> dict[str, Any]:
        kernel = inputs["kernel"]
        env = {"SOURCE_DATE_EPOCH": str(ctx.archive.source_date_epoch),
               "BK_KERNEL_VERSION": str(kernel.metadata["version"])}
        with tempfile.TemporaryDirectory(prefix="bootkiln-payload-") as folder:
            bundle = Path(folder) / "inputs.tar"
            with tarfile.open(bundle, "w") as archive:
                archive.add(inputs["rootfs"].artifact("rootfs.tar"), arcname="bootkiln/in/rootfs.tar")
                archive.add(kernel.artifact(TARGET_MODULES), arcname="bootkiln/in/target-modules.tar")
            ctx.runner.run(["/bootkiln/" + SCRIPT], stage=self.name,
                           where=Builder(image=ctx.builder.tag, network="none", env=env,
                                         uploads=[scripts_upload(ctx, SCRIPT), Upload("/", bundle)],
                                         collect=[("/work/out", scratch)]),
                           hint="compressing the installer's payload failed")
        return {"bytes": {name: (scratch / name).stat().st_size for name in PAYLOAD_FILES}}
