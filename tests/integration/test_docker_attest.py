"""The session's real build: its SBOMs against what is really in the images, and its provenance verified."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from bootkiln.attest.keys import generate_key_pair, keyid, load_public_key
from bootkiln.attest.packages import Package, parse_dpkg_status
from bootkiln.attest.sbom import purl
from bootkiln.attest.verify import verify_folder, verify_manifest
from bootkiln.console import Reporter
from bootkiln.core.builder import builder_packages
from bootkiln.paths import Workspace
from bootkiln.pipeline import Build
from bootkiln.profile.loader import load_profile
from bootkiln.stages.base import StageResult
from tests.fixtures import SessionBuild, invoke


def _dependencies(out: Path) -> dict[str, set[str]]:
    cdx = json.loads((out / "sbom.cdx.json").read_text())
    return {entry["ref"]: set(entry["dependsOn"]) for entry in cdx["dependencies"]}


def test_the_sboms_validate_and_list_what_is_really_in_the_images(
        default_iso: StageResult, default_rootfs: StageResult, session_build: SessionBuild) -> None:
    out = session_build.out()
    problems = validate_full_spdx_document(parse_file(str(out / "sbom.spdx.json")))
    assert [problem.validation_message for problem in problems] == []
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str((out / "sbom.cdx.json").read_text()) is None
    with tarfile.open(out / "rootfs.tar") as archive:
        member = archive.extractfile("./var/lib/dpkg/status")
        assert member is not None
        installed = parse_dpkg_status(member.read().decode())
    depends = _dependencies(out)
    assert depends["artifact:rootfs.tar"] == {purl(Package(name, version, arch), "bookworm")
                                              for (name, arch), (version, _, _) in installed.items()}
    kernel = (out / "kernel.txt").read_text()
    facts = dict(line.split("=", 1) for line in kernel.splitlines() if "=" in line and "/" not in line)
    kernel_purl = purl(Package(facts["package"], facts["package_version"], "amd64"), "bookworm")
    assert kernel_purl in depends["artifact:initrd.img"] and kernel_purl in depends["artifact:boot.iso"]
    assert any(ref.startswith("pkg:deb/debian/busybox@") and "arch=source" in ref
               for ref in depends["artifact:initrd.img"])
    for line in (out / "bootloader-packages.tsv").read_text().splitlines():
        name = line.split("\t")[0]
        assert any(ref.startswith(f"pkg:deb/debian/{name}@") for ref in depends["artifact:boot.iso"]), name
    tools = {ref.split("@")[0].removeprefix("pkg:deb/debian/") for ref in depends["builder-image"]}
    assert set(builder_packages()) <= tools
    cdx = json.loads((out / "sbom.cdx.json").read_text())
    rootfs_refs = depends["artifact:rootfs.tar"]
    licensed = [c for c in cdx["components"] if c.get("bom-ref") in rootfs_refs and c.get("licenses")]
    assert len(licensed) > len(rootfs_refs) // 2, "most Debian packages have DEP-5 copyright files"


def _library_components(out: Path) -> dict[str, dict[str, Any]]:
    cdx = json.loads((out / "sbom.cdx.json").read_text())
    return {c["purl"]: c for c in cdx["components"] if c["type"] == "library"}


def _deb_facts(component: dict[str, Any]) -> tuple[str | None, str | None]:
    """The .deb's sha256 and the source package a CycloneDX component records."""
    digest = next((h["content"] for h in component.get("hashes", []) if h["alg"] == "SHA-256"), None)
    source = {p["name"]: p["value"] for p in component["properties"]}.get("bootkiln:source-package")
    return digest, source


def test_builder_boot_loader_and_kernel_packages_carry_the_archives_deb_sha256_and_source(
        default_iso: StageResult, default_rootfs: StageResult, session_build: SessionBuild) -> None:
    """Read from the pinned archive's Packages index (verified against its Release file), not guessed."""
    out = session_build.out()
    components, depends = _library_components(out), _dependencies(out)
    manifest = json.loads((out / "manifest.json").read_text())
    kernel = manifest["stages"]["kernel"]
    kernel_purl = purl(Package(kernel["package"], kernel["package_version"], "amd64"), "bookworm")
    digest, kernel_source = _deb_facts(components[kernel_purl])
    assert digest == kernel["package_sha256"], "the kernel stage's digest of the .deb it unpacked"
    assert kernel_source is not None and kernel_source.startswith("linux"), kernel_source
    boot = {line.split("\t")[0] for line in (out / "bootloader-packages.tsv").read_text().splitlines()}
    boot_refs = [ref for ref in depends["artifact:boot.iso"] if ref.split("@")[0].removeprefix("pkg:deb/debian/")
                 in boot]
    assert len(boot_refs) == len(boot) > 0
    tools = depends["builder-image"]
    if manifest["builder"]["base"] != "mmdebstrap":  # a pulled base image's own packages may predate the archive
        tools = {ref for ref in tools if ref.split("@")[0].removeprefix("pkg:deb/debian/") in builder_packages()}
    assert len(tools) >= len(builder_packages())
    for ref in sorted({*boot_refs, *tools}):
        digest, source = _deb_facts(components[ref])
        assert digest is not None and re.fullmatch(r"[0-9a-f]{64}", digest), ref
        assert source, ref
    spdx = json.loads((out / "sbom.spdx.json").read_text())
    kernel_spdx = next(p for p in spdx["packages"] if p["name"] == kernel["package"])
    assert kernel_spdx["sourceInfo"].startswith(f"built from Debian source package {kernel_source} ")
    problems = validate_full_spdx_document(parse_file(str(out / "sbom.spdx.json")))
    assert [problem.validation_message for problem in problems] == []
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str((out / "sbom.cdx.json").read_text()) is None


def test_the_unsigned_session_build_verifies_and_says_so(default_iso: StageResult,
                                                         session_build: SessionBuild) -> None:
    out = session_build.out()
    verified = verify_folder(out, "default", None)
    sums = {line.split("  ")[1] for line in (out / "SHA256SUMS").read_text().splitlines()}
    assert set(verified.checked) == (sums - {"provenance.intoto.json"}) | {"manifest.json"}
    result = invoke(["verify-build", "--dir", str(out)])
    assert result.returncode == 0 and "NOTHING IS SIGNED" in result.output, result.output


def test_a_signed_build_from_the_session_cache(default_iso: StageResult, session_build: SessionBuild,
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every stage is a cache hit: only the records are written, signed, and the artifacts are unchanged."""
    private, public = generate_key_pair(tmp_path / "keys", "ecdsa-p256")
    monkeypatch.setenv("BOOTKILN_SIGNING_KEY", str(private))
    build = Build(load_profile(None), workspace=Workspace(cache=session_build.workspace.cache,
                                                           out=tmp_path / "out"), reporter=Reporter())
    build.iso()
    out = tmp_path / "out" / "default"
    assert (out / "boot.iso").read_bytes() == (session_build.out() / "boot.iso").read_bytes()
    assert not (out / "provenance.intoto.json").exists()
    key = load_public_key(public)
    envelope = Envelope.from_dict(json.loads((out / "provenance.dsse.json").read_text()))
    envelope.verify([SSlibKey.from_crypto(key, keyid=keyid(key))], 1)
    assert verify_folder(out, "default", key).signed
    assert verify_manifest(out / "manifest.json", key)
    result = invoke(["verify-build", "--dir", str(out), "--key", str(public)])
    assert result.returncode == 0 and "signature, every digest and the manifest hold" in result.output
    manifest_text = (out / "manifest.json").read_text()
    assert private.read_text().splitlines()[1] not in manifest_text
    assert str(private) not in manifest_text, "where the key lives is not part of the build"
    # Replace, never write through: out/ files are hard links to the stage cache's entries.
    (out / "vmlinuz").unlink()
    (out / "vmlinuz").write_bytes(b"swapped")
    result = invoke(["verify-build", "--dir", str(out), "--key", str(public)])
    assert result.returncode == 2 and "vmlinuz" in result.output, result.output
