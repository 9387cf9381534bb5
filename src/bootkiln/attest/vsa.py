"""The SLSA Verification Summary Attestation that `invoke verify-reproducible` writes.

Its subjects are the artifacts two independent builds made bit for bit identical; its predicate
names the differences the two builds ran under (time, TZ, locale, umask, checkout path, hostname).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bootkiln.attest.provenance import statement

VSA_TYPE = "https://slsa.dev/verification_summary/v1"
VERIFIER_ID = "https://bootkiln.invalid/verifier/verify-reproducible"
POLICY_URI = "https://bootkiln.invalid/policy/bit-for-bit-reproducible/v1"
REPRODUCIBLE_LEVEL = "BOOTKILN_REPRODUCIBLE_LEVEL_1"
UNSIGNED_NAME = "reproducible.vsa.intoto.json"
SIGNED_NAME = "reproducible.vsa.dsse.json"


@dataclass(frozen=True)
class Reproduced:
    name: str
    digest: str
    matches: bool


def summary(profile: str, version: str, checks: Iterable[Reproduced], conditions: list[dict[str, Any]],
            hostname_varied: bool, input_attestations: Mapping[str, str],
            verified_at: datetime | None = None) -> dict[str, Any]:
    checks = list(checks)
    reproduced = {check.name: check.digest for check in checks if check.matches}
    differing = sorted(check.name for check in checks if not check.matches)
    passed = bool(reproduced) and not differing
    varied = ["time", "TZ", "locale", "umask", "path"] + (["hostname"] if hostname_varied else [])
    if any(condition.get("builder_arch") for condition in conditions):
        varied.append("builder architecture")
    predicate = {
        "verifier": {"id": VERIFIER_ID, "version": {"bootkiln": version}},
        "timeVerified": (verified_at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "resourceUri": f"urn:bootkiln:profile:{profile}",
        "policy": {"uri": POLICY_URI},
        "inputAttestations": [{"uri": name, "digest": {"sha256": digest}}
                              for name, digest in sorted(input_attestations.items())],
        "verificationResult": "PASSED" if passed else "FAILED",
        "verifiedLevels": [REPRODUCIBLE_LEVEL] if passed else [],
        "slsaVersion": "1.0",
        "reproducibility": {
            "builds": len(conditions),
            "independent": "two complete builds from empty stage caches, each in its own copy of the checkout",
            "varied": varied,
            "conditions": conditions,
            "reproduced": sorted(reproduced),
            "differing": differing,
        },
    }
    return statement(reproduced, VSA_TYPE, predicate)
