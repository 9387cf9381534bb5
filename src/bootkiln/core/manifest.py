"""Build manifests: what was built, from what, and enough to build it again and compare.

A manifest records the profile as resolved, the archive state (mirror or snapshot, Release hash,
SOURCE_DATE_EPOCH), the builder image and how it was made, bootkiln's version and commit, a digest
of every input file in the checkout (scripts, overlays, configs, docker/, bootkiln's code), each
stage's facts (package versions and sha256s, kernel and modules, busybox) and every artifact's
sha256. It is sealed with a sha256 of its own canonical form, so an edited manifest is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bootkiln import __version__
from bootkiln.console import Reporter
from bootkiln.core.runner import Host, Runner
from bootkiln.errors import BootkilnError, InputError
from bootkiln.hashing import Fingerprint
from bootkiln.paths import project_root, read_user_file
from bootkiln.profile.loader import busybox_config, overlay_dir
from bootkiln.profile.schema import Profile

FORMAT = 1
SEAL = "manifest_sha256"
MANIFEST_HINT = "use a manifest.json exactly as a build of this bootkiln wrote it (out/<profile>/manifest.json)"


def canonical(data: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in data.items() if k != SEAL}, sort_keys=True, separators=(",", ":")).encode()


def seal(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, SEAL: hashlib.sha256(canonical(data)).hexdigest()}


def source_commit() -> str:
    """The checkout's git commit, '+dirty' when it has changes; 'unknown' outside git."""
    runner = Runner(Reporter(quiet_output=True))
    root = str(project_root())
    try:
        commit = runner.run(["git", "-C", root, "rev-parse", "HEAD"], stage="git", where=Host())[0].strip()
        dirty = runner.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"], stage="git",
                           where=Host())
    except (BootkilnError, IndexError):
        return "unknown"
    return commit + ("+dirty" if any(line.strip() for line in dirty) else "")


def input_digests(profile: Profile) -> dict[str, str]:
    """A digest of each checkout input a build reads besides the profile itself."""
    root = project_root()
    trees = {"scripts": root / "scripts", "docker": root / "docker", "bootkiln": root / "src" / "bootkiln"}
    for part, names in (("rootfs", profile.rootfs.overlays), ("initramfs", profile.initramfs.overlays)):
        for name in names:
            trees[f"overlay:{part}:{name}"] = overlay_dir(profile, name, f"{part}.overlays")
    digests = {label: Fingerprint("tree").add_tree(label, path).hexdigest() for label, path in trees.items()}
    digests["busybox.config"] = Fingerprint("file").add_file("config", busybox_config(profile)).hexdigest()
    return digests


def architectures(target: str, builder: str, stages: Mapping[str, Mapping[str, Any]],
                  builder_runs: str = "native") -> dict[str, Any]:
    """The target's and the builder's architectures, how the builder itself ran (natively, or under
    qemu-user standing in for a host of its architecture), and how binaries of the target ran."""
    foreign: dict[str, Any]
    if target == builder:
        foreign = {"method": "none", "why": "the builder is native to the target"}
    else:
        ran = {"busybox": f"cross-compiled with the builder's {builder}->{target} toolchain, never run",
               "kernel": "unpacked with dpkg-deb, never run",
               "bootloader": "the target's boot loader packages unpacked, never run"}
        if "rootfs" in stages:
            how = stages["rootfs"].get("foreign_binaries", "qemu-user via binfmt_misc")
            ran["rootfs"] = f"mmdebstrap ran the maintainer scripts under {how}"
        foreign = {"method": "cross" if set(ran) <= {"busybox", "kernel", "bootloader"} else "cross+qemu-user",
                   "stages": {name: how for name, how in sorted(ran.items()) if name in stages}}
    return {"target": target, "builder": builder, "builder_runs": builder_runs, "foreign_binaries": foreign}


def new_manifest(profile: Profile, archive: dict[str, Any], builder: dict[str, Any],
                 stages: dict[str, dict[str, Any]], artifacts: dict[str, str]) -> dict[str, Any]:
    return seal({
        "format": FORMAT,
        "bootkiln": {"version": __version__, "commit": source_commit()},
        "profile": profile.resolved(),
        "profile_file": str(profile.source) if profile.source else None,
        "archive": archive,
        "builder": builder,
        "architectures": architectures(profile.debian.architecture, builder.get("architecture", "amd64"), stages,
                                       builder.get("runs", "native")),
        "inputs": input_digests(profile),
        "stages": stages,
        "artifacts": artifacts,
    })


def merge(previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, Any]:
    """Keep earlier stages of the same profile and archive state (e.g. rootfs, then build-iso)."""
    if not previous or any(previous.get(k) != current[k] for k in ("profile", "archive", "builder", "inputs")):
        return current
    merged = {**current, "stages": {**previous.get("stages", {}), **current["stages"]},
              "artifacts": {**previous.get("artifacts", {}), **current["artifacts"]}}
    return seal(merged)


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
ArtifactName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class _Strict(BaseModel):
    # strict: a manifest is JSON that bootkiln wrote, so no coercion ("1" is not 1, true is not 1).
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Stamp(_Strict):
    version: str
    commit: str


class Attestations(_Strict):
    """The SBOMs and provenance a build wrote beside the manifest (attest/records.py)."""

    sboms: dict[ArtifactName, Sha256]
    provenance: ArtifactName
    signed: bool
    keyid: str | None


class ManifestShape(_Strict):
    """The structure of a manifest, checked before anything in it is used. The seal is a plain sha256
    anyone can recompute, so a sealed manifest may still be malformed; what the values mean (the
    profile, the stage names, the artifacts) is checked by whoever uses them (verify/reproduce.py)."""

    format: Literal[1]
    bootkiln: Stamp
    profile: dict[str, Any]
    profile_file: str | None
    archive: dict[str, Any]
    builder: dict[str, Any]
    architectures: dict[str, Any] | None = None  # manifests before arm64 support lack it
    inputs: dict[str, str]
    stages: dict[str, dict[str, Any]]
    artifacts: dict[ArtifactName, Sha256]
    attestations: Attestations | None = None
    manifest_sha256: Sha256


def _shape_errors(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors()[:10]:
        key = (".".join(str(part) for part in error["loc"]) or "(top level)")[:80]
        what = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        lines.append(f"  key '{key}': {what}")
    return "\n".join(lines)


def load_manifest(path: Path) -> dict[str, Any]:
    """Read a manifest, refusing one that was edited, written by another bootkiln, or malformed."""
    raw = read_user_file(path, "manifest", hint=MANIFEST_HINT)
    try:
        data: Any = json.loads(raw)
    except ValueError as exc:
        # ValueError covers bad JSON and bytes that are not UTF-8; RecursionError is deep nesting.
        raise InputError(f"{path}: not a readable manifest: {exc}", hint=MANIFEST_HINT) from None
    except RecursionError:
        raise InputError(f"{path}: not a readable manifest: nested too deeply", hint=MANIFEST_HINT) from None
    if not isinstance(data, dict) or type(data.get("format")) is not int or data["format"] != FORMAT \
            or not isinstance(data.get(SEAL), str):
        raise InputError(f"{path}: not a bootkiln manifest of format {FORMAT}", hint=MANIFEST_HINT)
    if hashlib.sha256(canonical(data)).hexdigest() != data[SEAL]:
        raise InputError(f"{path}: the manifest was edited after it was written (its {SEAL} does not match)",
                         hint="use the manifest exactly as the build wrote it")
    stamp = data.get("bootkiln")
    written_by = stamp.get("version") if isinstance(stamp, dict) else None
    if isinstance(written_by, str) and written_by != __version__:
        commit = stamp.get("commit") if isinstance(stamp, dict) else None
        raise InputError(f"{path}: written by bootkiln {written_by}, this is bootkiln {__version__}",
                         hint=f"check out bootkiln {written_by} (commit {commit}) to rebuild it")
    try:
        ManifestShape.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{path}: malformed manifest\n{_shape_errors(exc)}", hint=MANIFEST_HINT) from None
    return data
