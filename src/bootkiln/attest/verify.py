"""Check a folder of artifacts against its provenance: the signature, every digest, and the manifest.

With a public key, only a DSSE envelope signed by that key is accepted. Without one, the digests
are still checked against the bare statement, and the result says plainly that nothing proves who
wrote it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootkiln.attest import dsse
from bootkiln.attest.keys import PublicKey, keyid
from bootkiln.attest.provenance import PROVENANCE_TYPE, SIGNED_NAME, STATEMENT_TYPE, UNSIGNED_NAME
from bootkiln.attest.vsa import SIGNED_NAME as VSA_SIGNED_NAME
from bootkiln.attest.vsa import UNSIGNED_NAME as VSA_UNSIGNED_NAME
from bootkiln.errors import InputError
from bootkiln.hashing import sha256_file

SIGN_HINT = "sign builds: set [signing] key in the profile, or BOOTKILN_SIGNING_KEY, then build again"
MANIFEST = "manifest.json"
VSA_NAMES = (VSA_SIGNED_NAME, VSA_UNSIGNED_NAME)
SUMS = "SHA256SUMS"


@dataclass(frozen=True)
class Verified:
    folder: Path
    profile: str
    signed: bool
    keyid: str | None
    attestation: str = ""
    checked: list[str] = field(default_factory=list)
    unattested: list[str] = field(default_factory=list)  # files in the folder that nothing here vouches for


def attestation_in(folder: Path) -> Path:
    for name in (SIGNED_NAME, UNSIGNED_NAME):
        if (folder / name).is_file():
            return folder / name
    raise InputError(f"{folder}: no {SIGNED_NAME} or {UNSIGNED_NAME}: nothing attests these artifacts",
                     hint="point --dir at a build's output folder (out/<profile>/), built by this bootkiln")


def read_statement(path: Path, key: PublicKey | None,
                   expected_type: str = PROVENANCE_TYPE) -> tuple[dict[str, Any], bool]:
    """The statement in a file, and whether a signature by `key` was checked.

    A key demands a DSSE envelope signed by it; without a key the statement is read unverified.
    """
    data = _read(path)
    envelope = path.name.endswith(".dsse.json")
    if key is not None:
        if not envelope:
            raise InputError(f"{path}: the statement is not signed, but a verification key was given",
                             hint=SIGN_HINT)
        payload = dsse.verify(data, key, str(path))
    if envelope:
        payload_type, unchecked, _ = dsse.parse(data, str(path))
        if payload_type != dsse.IN_TOTO_PAYLOAD:
            raise InputError(f"{path}: the envelope's payloadType is {payload_type!r}, not {dsse.IN_TOTO_PAYLOAD}")
        payload = payload if key is not None else unchecked
    else:
        payload = data
    return check_statement(payload, str(path), expected_type), key is not None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot be read: {exc.strerror}") from None


def check_statement(payload: bytes, where: str, expected_type: str) -> dict[str, Any]:
    try:
        statement = json.loads(payload)
    except ValueError:
        raise InputError(f"{where}: the statement is not JSON") from None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise InputError(f"{where}: not an in-toto Statement v1 (_type {STATEMENT_TYPE})")
    if statement.get("predicateType") != expected_type:
        raise InputError(f"{where}: predicateType is {statement.get('predicateType')!r}, not {expected_type}")
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise InputError(f"{where}: the statement names no subject")
    for subject in subjects:
        name, digest = _at(subject, "name"), _at(subject, "digest", "sha256")
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise InputError(f"{where}: a subject's name {name!r} is not a plain file name")
        if not isinstance(digest, str) or len(digest) != 64:
            raise InputError(f"{where}: subject {name} has no sha256 digest")
    return statement


def subject_digests(statement: dict[str, Any]) -> dict[str, str]:
    return {subject["name"]: subject["digest"]["sha256"] for subject in statement["subject"]}


def _at(data: Any, *keys: str) -> Any:
    """data[k1][k2]..., or None where a level is missing or not a table (a statement is untrusted input)."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def statement_profile(statement: dict[str, Any]) -> str | None:
    name = _at(statement, "predicate", "buildDefinition", "externalParameters", "profileName")
    return name if isinstance(name, str) else None


def _differences(recorded: Any, expected: Any, prefix: str = "") -> list[str]:
    if isinstance(recorded, dict) and isinstance(expected, dict):
        return [difference for key in sorted(set(recorded) | set(expected))
                for difference in _differences(recorded.get(key), expected.get(key), f"{prefix}{key}.")]
    return [] if recorded == expected else [prefix.rstrip(".")]


def _check_profile(statement: dict[str, Any], profile: str, where: Path,
                   resolved: dict[str, Any] | None) -> None:
    named = statement_profile(statement)
    if named != profile:
        raise InputError(f"{where}: the statement is for profile {named!r}, not {profile!r}",
                         hint="verify a folder with the profile it was built from")
    if resolved is None:
        return
    recorded = _at(statement, "predicate", "buildDefinition", "externalParameters", "profile")
    changed = _differences(recorded, resolved)
    if changed:
        raise InputError(f"{where}: built from a profile {profile!r} that differs from this one in "
                         f"{', '.join(changed[:8])}{' ...' if len(changed) > 8 else ''}",
                         hint="verify with the profile exactly as it was when the folder was built")


def _recorded_sums(folder: Path) -> dict[str, str]:
    path = folder / SUMS
    if not path.is_file():
        return {}
    sums = {}
    for line in path.read_text().splitlines():
        digest, _, name = line.partition("  ")
        sums[name] = digest
    return sums


def _check_manifest(folder: Path, digests: dict[str, str], profile: str) -> None:
    """The manifest is one of the subjects; every artifact it lists must be one too, with the same digest."""
    path = folder / MANIFEST
    if MANIFEST not in digests:
        raise InputError(f"{folder}: the statement does not cover {MANIFEST}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        raise InputError(f"{path}: not a readable manifest") from None
    if _at(manifest, "profile", "name") != profile:
        raise InputError(f"{path}: the manifest is for profile {_at(manifest, 'profile', 'name')!r}, not {profile!r}")
    artifacts = _at(manifest, "artifacts")
    if not isinstance(artifacts, dict):
        raise InputError(f"{path}: the manifest has no 'artifacts' table")
    for name, digest in sorted(artifacts.items(), key=lambda item: str(item[0])):
        if (folder / name).exists() and digests.get(name) != digest:
            raise InputError(f"{path}: artifact {name} has sha256 {digest} in the manifest but "
                             f"{digests.get(name)} in the statement")


def verify_folder(folder: Path, profile: str, key: PublicKey | None,
                  resolved: dict[str, Any] | None = None) -> Verified:
    """Every check, or an InputError naming the first thing that does not hold.

    resolved: the profile as Profile.resolved() gives it, to check the build was made from exactly it.
    """
    attestation = attestation_in(folder)
    if key is not None and attestation.name == UNSIGNED_NAME:
        raise InputError(f"{folder}: only an unsigned {UNSIGNED_NAME} is here, no signed {SIGNED_NAME}",
                         hint=SIGN_HINT)
    statement, signed = read_statement(attestation, key)
    _check_profile(statement, profile, attestation, resolved)
    digests = subject_digests(statement)
    checked = []
    for name, digest in sorted(digests.items()):
        path = folder / name
        if not path.is_file():
            raise InputError(f"{path}: missing; the statement lists it with sha256 {digest}")
        actual = sha256_file(path)
        if actual != digest:
            raise InputError(f"{path}: sha256 {actual} does not match the statement's {digest}: the file was "
                             "changed after the build", hint="take the artifacts exactly as the build wrote them")
        checked.append(name)
    _check_manifest(folder, digests, profile)
    for name, digest in sorted(_recorded_sums(folder).items()):
        if name in (SIGNED_NAME, UNSIGNED_NAME):
            continue
        if digests.get(name) != digest:
            raise InputError(f"{folder / SUMS}: lists {name} with sha256 {digest}, which the statement "
                             f"{'does not cover' if name not in digests else 'gives as ' + digests[name]}")
    own = {SIGNED_NAME, UNSIGNED_NAME, SUMS, *VSA_NAMES}
    unattested = sorted(path.name for path in folder.iterdir()
                        if path.is_file() and path.name not in digests and path.name not in own)
    return Verified(folder, profile, signed, keyid(key) if key else None, attestation.name, checked, unattested)


def verify_manifest(manifest: Path, key: PublicKey) -> dict[str, Any]:
    """The signed statement beside a manifest, checked with `key` and covering the manifest's exact bytes."""
    envelope = manifest.parent / SIGNED_NAME
    if not envelope.is_file():
        raise InputError(f"{manifest}: no signed {SIGNED_NAME} beside it, and a signing key is configured, so "
                         "an unsigned manifest is not trusted", hint=SIGN_HINT)
    statement, _ = read_statement(envelope, key)
    digests = subject_digests(statement)
    actual = sha256_file(manifest)
    if digests.get(MANIFEST) != actual:
        raise InputError(f"{manifest}: its sha256 {actual} is not the one the signed statement gives "
                         f"({digests.get(MANIFEST)}): the manifest was changed after it was signed",
                         hint="use the manifest exactly as the build wrote it")
    return statement
