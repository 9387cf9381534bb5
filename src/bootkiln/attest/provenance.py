"""in-toto Statement v1 with an SLSA Provenance v1 predicate: what a build made, from what, with what.

The statement is written bare (provenance.intoto.json) or, when a signing key is configured, inside
a DSSE envelope (provenance.dsse.json). Its subjects are every published artifact, the SBOMs and
manifest.json, so one signature covers them all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PROVENANCE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://bootkiln.invalid/provenance/build/v1"
BUILDER_ID = "https://bootkiln.invalid/builder/local"
UNSIGNED_NAME = "provenance.intoto.json"
SIGNED_NAME = "provenance.dsse.json"
ATTESTATION_NAMES = (UNSIGNED_NAME, SIGNED_NAME)


def subjects(digests: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"name": name, "digest": {"sha256": digests[name]}} for name in sorted(digests)]


def statement(subject_digests: Mapping[str, str], predicate_type: str, predicate: dict[str, Any]) -> dict[str, Any]:
    return {"_type": STATEMENT_TYPE, "subject": subjects(subject_digests), "predicateType": predicate_type,
            "predicate": predicate}


def _archive_dependency(archive: Mapping[str, Any]) -> dict[str, Any]:
    mirror = str(archive.get("mirror", ""))
    snapshot = archive.get("snapshot")
    uri = f"{mirror.rstrip('/')}/dists/{archive.get('suite', '')}/Release"
    dependency: dict[str, Any] = {"uri": uri, "name": "Debian archive Release"}
    if archive.get("release_sha256"):
        dependency["digest"] = {"sha256": archive["release_sha256"]}
    if snapshot:
        dependency["annotations"] = {"snapshot": snapshot}
    return dependency


def provenance(manifest: Mapping[str, Any], subject_digests: Mapping[str, str]) -> dict[str, Any]:
    """The statement for a build, from its manifest (which holds every fact the predicate names)."""
    profile = manifest["profile"]
    builder = manifest["builder"]
    bootkiln = manifest["bootkiln"]
    commit = str(bootkiln.get("commit", "unknown"))
    source: dict[str, Any] = {"uri": "git+bootkiln", "name": "bootkiln checkout",
                              "annotations": {"version": bootkiln.get("version"), "commit": commit}}
    clean_commit = commit.removesuffix("+dirty")
    if len(clean_commit) == 40 and all(c in "0123456789abcdef" for c in clean_commit):
        source["digest"] = {"gitCommit": clean_commit}
    image_id = str(builder.get("image_id", ""))
    predicate = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {"profile": profile, "profileName": profile.get("name")},
            "internalParameters": {"archive": manifest["archive"], "inputs": manifest.get("inputs", {}),
                                   "stages": {name: stage.get("key") for name, stage in
                                              sorted(manifest.get("stages", {}).items())}},
            "resolvedDependencies": [
                source,
                {"uri": f"docker-image://{builder.get('tag', '')}", "name": "builder image",
                 "digest": {"sha256": image_id.removeprefix("sha256:")}},
                _archive_dependency(manifest["archive"]),
            ],
        },
        "runDetails": {
            "builder": {"id": BUILDER_ID, "version": {"bootkiln": str(bootkiln.get("version"))},
                        "builderDependencies": [{"uri": f"docker-image://{builder.get('tag', '')}",
                                                 "digest": {"sha256": image_id.removeprefix("sha256:")},
                                                 "annotations": {"base": builder.get("base"),
                                                                 "recipe": builder.get("base_recipe")}}]},
            "metadata": {"invocationId": f"bootkiln:{profile.get('name')}:{manifest.get('manifest_sha256', '')}"},
        },
    }
    return statement(subject_digests, PROVENANCE_TYPE, predicate)


def statement_bytes(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
