"""What Build.publish adds to out/<profile>/: the two SBOMs and the provenance, signed when a key is set.

The records are made from what the build published (the manifest, packages.tsv, the rootfs tarball,
the stage metadata) and from the builder image, which reports its own packages once per image ID.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootkiln import __version__
from bootkiln.atomicfile import write_atomic
from bootkiln.attest import dsse, sbom
from bootkiln.attest.archive_index import ArchiveIndex
from bootkiln.attest.keys import PrivateKey, configured_key_path, keyid, load_private_key
from bootkiln.attest.packages import Inventory, collect, enrich, parse_builder_report
from bootkiln.attest.provenance import SIGNED_NAME, UNSIGNED_NAME, provenance, statement_bytes
from bootkiln.core.manifest import seal
from bootkiln.profile.schema import Profile

SBOM_NAMES = (sbom.SPDX_NAME, sbom.CYCLONEDX_NAME)
# Folder in the stage cache for facts read once per builder image or rootfs tarball.
FACTS_FOLDER = "attest-facts"


def signing_key(profile: Profile) -> PrivateKey | None:
    path = configured_key_path(profile.signing.key, profile.base_dir)
    return load_private_key(path) if path else None


def _write(path: Path, data: bytes) -> str:
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def cached_json(cache: Path, name: str, make: Callable[[], Any]) -> Any:
    """A fact that depends only on its name (an image ID, a tarball's sha256): made once, then read."""
    path = cache / FACTS_FOLDER / name
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except ValueError:
            pass
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, json.dumps(value, sort_keys=True).encode())
    return value


@dataclass(frozen=True)
class BuildSources:
    """What the records are made from, as Build.publish has it."""

    profile: Profile
    manifest: Mapping[str, Any]
    artifacts: Mapping[str, str]  # the artifacts in out/, name -> sha256
    consumers: Mapping[str, set[str]]  # stage -> every stage that consumes it, directly or not
    builder_report: list[str]  # output of packages.BUILDER_QUERY in the builder image
    rootfs_details: Mapping[str, Any] | None  # packages.read_rootfs of the published rootfs.tar
    # The Packages indexes of the profile's and the builder's archive states (.deb sha256, source packages).
    archive_index: ArchiveIndex | None = None
    builder_archive_index: ArchiveIndex | None = None
    # Where rendered SBOMs are kept by what they are made from, so an unchanged build does not read the
    # archive's indexes again (None: always render).
    facts_cache: Path | None = None


def inventory(sources: BuildSources, out: Path) -> Inventory:
    metadata = {name: {**stage, "sha256": stage.get("artifacts", {})}
                for name, stage in sources.manifest.get("stages", {}).items()}

    def text(name: str) -> str | None:
        return (out / name).read_text() if name in sources.artifacts and (out / name).is_file() else None

    architecture = sources.profile.debian.architecture
    found = collect(metadata, sources.consumers, set(sources.artifacts), architecture,
                    rootfs=sources.rootfs_details, packages_tsv=text("packages.tsv"),
                    bootloader_tsv=text("bootloader-packages.tsv"), uki_tsv=text("uki-packages.tsv"),
                    applets=(text("applets.txt") or "").split(),
                    builder=parse_builder_report(sources.builder_report))
    enrich(found, architecture, sources.archive_index, sources.builder_archive_index)
    return found


def sbom_facts(sources: BuildSources) -> sbom.BuildFacts:
    manifest = sources.manifest
    return sbom.BuildFacts(
        profile=sources.profile.name, suite=sources.profile.debian.suite,
        source_date_epoch=int(manifest["archive"]["source_date_epoch"]), bootkiln_version=__version__,
        artifacts=dict(sources.artifacts), builder_tag=str(manifest["builder"].get("tag", "")),
        builder_image_id=str(manifest["builder"].get("image_id", "")))


def sbom_inputs_key(sources: BuildSources, facts: sbom.BuildFacts) -> str:
    """A digest of everything the SBOMs are made from: the stages' records and the artifacts' digests (which
    cover packages.tsv, the boot-loader list and the applets), the builder image, both archive states, and
    the code that renders them."""
    indexes = [(index.state.identity(), list(index.components)) if index else None
               for index in (sources.archive_index, sources.builder_archive_index)]
    code = {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(Path(__file__).parent.glob("*.py"))}
    parts = {"facts": dataclasses.asdict(facts), "stages": sources.manifest.get("stages", {}),
             "consumers": {name: sorted(names) for name, names in sources.consumers.items()},
             "architecture": sources.profile.debian.architecture, "builder": sources.builder_report,
             "rootfs": sources.rootfs_details, "indexes": indexes, "code": code}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def write_sboms(sources: BuildSources, out: Path) -> dict[str, str]:
    facts = sbom_facts(sources)

    def render() -> dict[str, str]:
        packages = inventory(sources, out)
        return {sbom.SPDX_NAME: sbom.render(sbom.spdx_document(facts, packages)).decode(),
                sbom.CYCLONEDX_NAME: sbom.render(sbom.cyclonedx_document(facts, packages)).decode()}

    rendered: dict[str, str] = (cached_json(sources.facts_cache, f"sboms-{sbom_inputs_key(sources, facts)}.json",
                                            render) if sources.facts_cache else render())
    return {name: _write(out / name, rendered[name].encode()) for name in SBOM_NAMES}


def manifest_entry(sboms: Mapping[str, str], key: PrivateKey | None) -> dict[str, Any]:
    """What the manifest says of its records (the provenance, which covers the manifest, by name only)."""
    return {"sboms": dict(sboms), "provenance": SIGNED_NAME if key else UNSIGNED_NAME, "signed": key is not None,
            "keyid": keyid(key.public_key()) if key else None}


def write_provenance(out: Path, manifest: Mapping[str, Any], subjects: Mapping[str, str],
                     key: PrivateKey | None) -> tuple[str, str]:
    """provenance.dsse.json (signed) or provenance.intoto.json (bare); the other one is removed."""
    payload = statement_bytes(provenance(manifest, subjects))
    name, stale = (SIGNED_NAME, UNSIGNED_NAME) if key else (UNSIGNED_NAME, SIGNED_NAME)
    data = dsse.envelope_bytes(dsse.sign(payload, key)) if key else payload
    digest = _write(out / name, data)
    (out / stale).unlink(missing_ok=True)
    return name, digest


def publish(out: Path, sources: BuildSources, key: PrivateKey | None) -> dict[str, str]:
    """The SBOMs, then manifest.json naming them, then the provenance covering all three and every artifact.

    Returns what SHA256SUMS lists: the artifacts, the SBOMs and the provenance file.
    """
    sboms = write_sboms(sources, out)
    manifest = seal({**sources.manifest, "attestations": manifest_entry(sboms, key)})
    manifest_digest = _write(out / "manifest.json", (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    name, digest = write_provenance(out, manifest, {**sources.artifacts, **sboms, "manifest.json": manifest_digest},
                                    key)
    return {**sources.artifacts, **sboms, name: digest}


def signing_note(key: PrivateKey | None) -> str:
    if key is None:
        return (f"provenance: {UNSIGNED_NAME} is NOT signed (no signing key: set [signing] key in the profile "
                "or BOOTKILN_SIGNING_KEY)")
    return f"provenance: {SIGNED_NAME} signed by key {keyid(key.public_key())}"
