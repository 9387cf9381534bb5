"""The build manifest that identifies what is published: its seal (manifest_sha256) tags AMIs and S3 objects.

The seal is checked, so an edited manifest is refused, and the artifact being published is checked
against the manifest's record of it, so a stale manifest never vouches for a different image.
A manifest from another bootkiln version is accepted: publishing does not rebuild anything.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootkiln.core.manifest import FORMAT, SEAL, canonical
from bootkiln.errors import InputError
from bootkiln.hashing import sha256_file
from bootkiln.paths import read_user_file


@dataclass(frozen=True)
class BuildManifest:
    path: Path
    sha256: str
    artifacts: dict[str, str]
    # The build's SBOMs (name -> sha256 the manifest records) and provenance file (name -> None: the
    # provenance covers the manifest, so the manifest cannot hold its digest; SHA256SUMS does).
    records: dict[str, str | None] = field(default_factory=dict)

    def check_artifact(self, name: str, path: Path) -> str | None:
        """The artifact's sha256 if the manifest lists it (and it matches); None if it is not listed."""
        recorded = self.artifacts.get(name)
        if recorded is None:
            return None
        actual = sha256_file(path)
        if actual != recorded:
            raise InputError(f"{path} does not match the build manifest {self.path}: its sha256 is {actual}, "
                             f"the manifest records {recorded} for {name}",
                             hint="publish the files of one build: rebuild, or pass the matching --manifest")
        return actual

    def record_files(self) -> dict[str, tuple[Path, str]]:
        """The SBOMs and provenance beside the manifest, name -> (path, sha256), each checked against the
        manifest (SBOMs) or SHA256SUMS (the provenance); a missing or changed one is refused."""
        sums = _sha256sums(self.path.parent / "SHA256SUMS")
        found: dict[str, tuple[Path, str]] = {}
        for name, recorded in sorted(self.records.items()):
            path = self.path.parent / name
            if not path.is_file():
                raise InputError(f"{path} is missing: the build manifest {self.path} names it",
                                 hint="publish the whole output folder of one build, or rebuild")
            actual = sha256_file(path)
            expected = recorded or sums.get(name)
            if expected is not None and actual != expected:
                raise InputError(f"{path} does not match the build that wrote {self.path}: its sha256 is {actual}, "
                                 f"the build recorded {expected}",
                                 hint="publish the files of one build: rebuild, or pass the matching --manifest")
            found[name] = (path, actual)
        return found


# A record's name is a plain file name beside the manifest, never a path out of its folder.
RECORD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _sha256sums(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    listed: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        if re.fullmatch(r"[0-9a-f]{64}", digest) and name:
            listed[name] = digest
    return listed


def _records(path: Path, data: dict[str, Any], build_task: str) -> dict[str, str | None]:
    """The SBOMs and provenance file the manifest's `attestations` names (none for an older build)."""
    entry = data.get("attestations")
    if entry is None:
        return {}
    sboms = entry.get("sboms") if isinstance(entry, dict) else None
    provenance = entry.get("provenance") if isinstance(entry, dict) else None
    names = [*sboms, provenance] if isinstance(sboms, dict) else []
    if (not isinstance(sboms, dict) or not isinstance(provenance, str)
            or not all(isinstance(name, str) and RECORD_NAME.fullmatch(name) for name in names)
            or not all(isinstance(digest, str) for digest in sboms.values())):
        raise InputError(f"{path}: its 'attestations' table is not what a build writes "
                         "(SBOM names with their sha256, and the provenance file's name)",
                         hint=f"rebuild with invoke {build_task}")
    return {**{str(name): str(digest) for name, digest in sboms.items()}, provenance: None}


def read_manifest(path: Path, *, build_task: str) -> BuildManifest:
    raw = read_user_file(path, "build manifest", hint=f"build first (invoke {build_task}), or pass --manifest PATH")
    try:
        data: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(f"{path} is not a build manifest: {exc}", hint=f"rebuild with invoke {build_task}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or SEAL not in data:
        raise InputError(f"{path} is not a bootkiln build manifest of format {FORMAT}",
                         hint=f"rebuild with invoke {build_task}")
    if hashlib.sha256(canonical(data)).hexdigest() != data[SEAL]:
        raise InputError(f"{path}: the manifest was edited after the build wrote it (its {SEAL} does not match)",
                         hint="publish with the manifest exactly as the build wrote it")
    artifacts = data.get("artifacts")
    if not isinstance(artifacts, dict):
        raise InputError(f"{path} has no 'artifacts' table", hint=f"rebuild with invoke {build_task}")
    return BuildManifest(path, str(data[SEAL]), {str(k): str(v) for k, v in artifacts.items()},
                         _records(path, data, build_task))
