"""The build manifest that identifies what is published: its seal (manifest_sha256) tags AMIs and S3 objects.

The seal is checked, so an edited manifest is refused, and the artifact being published is checked
against the manifest's record of it, so a stale manifest never vouches for a different image.
A manifest from another bootkiln version is accepted: publishing does not rebuild anything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
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
    return BuildManifest(path, str(data[SEAL]), {str(k): str(v) for k, v in artifacts.items()})
