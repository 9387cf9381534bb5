"""ukisign stage: the Unified Kernel Images signed with the profile's own Secure Boot key (sbsign).

Script: scripts/ukisign.sh. The key goes to a fresh builder container (network none) through the
Docker API for this one run and is never collected: only /work/out comes back, holding the signed
image. The cache key holds the certificate's fingerprint (which fixes the key pair, as preflight
checks they match), never anything of the key. sbsign stamps its signature with the clock; the
script pins that to SOURCE_DATE_EPOCH, and RSA PKCS#1 v1.5 signatures are deterministic, so the
same inputs give the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bootkiln.core.runner import Builder
from bootkiln.errors import InputError
from bootkiln.profile.sbkeys import load_keys
from bootkiln.profile.schema import Profile
from bootkiln.stages.artifacts import UKI_MEDIA, uki_signed, uki_unsigned
from bootkiln.stages.base import Inputs, StageBase, StageContext, add_scripts, base_fingerprint, scripts_upload

SCRIPT = "ukisign.sh"


class UkiSignStage(StageBase):
    name = "ukisign"
    requires: tuple[str, ...] = ("uki",)
    outputs: tuple[str, ...] = tuple(uki_signed(medium) for medium in UKI_MEDIA)

    def check(self, profile: Profile) -> None:
        if load_keys(profile) is None:
            raise InputError(f"{profile.where}: the ukisign stage signs with the profile's own Secure Boot key, and "
                             "the profile names none", hint="set [secureboot] key and cert (docs/secureboot.md)")

    def key(self, ctx: StageContext, inputs: Inputs) -> str:
        keys = load_keys(ctx.profile)
        assert keys is not None
        fingerprint = (
            base_fingerprint(self, inputs)
            .add_text("builder", ctx.builder.image_id)
            .add_text("epoch", str(ctx.archive.source_date_epoch))
            .add_text("cert", keys.fingerprint)
        )
        return add_scripts(fingerprint, SCRIPT).hexdigest()

    def build(self, ctx: StageContext, inputs: Inputs, scratch: Path) -> dict[str, Any]:
        keys = load_keys(ctx.profile)
        assert keys is not None
        files = {
            **{f"in/{uki_unsigned(medium)}": (inputs["uki"].artifact(uki_unsigned(medium)).read_bytes(), 0o644)
               for medium in UKI_MEDIA},
            "sb/db.key": (keys.key.read_bytes(), 0o600),
            "sb/db.crt": (keys.cert.read_bytes(), 0o644),
        }
        env = {"SOURCE_DATE_EPOCH": str(ctx.archive.source_date_epoch)}
        ctx.runner.run(["/bootkiln/" + SCRIPT], stage=self.name,
                       where=Builder(image=ctx.builder.tag, network="none", env=env,
                                     uploads=[scripts_upload(ctx, SCRIPT, extra=files)],
                                     collect=[("/work/out", scratch)]),
                       hint="signing the Unified Kernel Image failed; the builder image may lack sbsigntool or gcc")
        return {"bytes": {medium: (scratch / uki_signed(medium)).stat().st_size for medium in UKI_MEDIA},
                **keys.describe()}
