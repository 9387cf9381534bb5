"""SBOMs of a build: SPDX 2.3 JSON and CycloneDX 1.6 JSON, with deterministic bytes.

Both list every published artifact with its sha256, every Debian package with a purl, and which
artifact contains which package; the builder image's packages are build tools. Nothing depends on
when or where the SBOM is written: the time is SOURCE_DATE_EPOCH, and the SPDX namespace and the
CycloneDX serial number are derived from the document's own content.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from bootkiln.attest.licences import licence_refs
from bootkiln.attest.packages import Inventory, Package

SPDX_NAME = "sbom.spdx.json"
CYCLONEDX_NAME = "sbom.cdx.json"
NAMESPACE_BASE = "https://bootkiln.invalid/spdx"
DEBIAN_RELEASES = {"buster": "10", "bullseye": "11", "bookworm": "12", "trixie": "13", "forky": "14"}


@dataclass(frozen=True)
class BuildFacts:
    """What both SBOMs say about the build itself."""

    profile: str
    suite: str
    source_date_epoch: int
    bootkiln_version: str
    artifacts: Mapping[str, str]  # published name -> sha256
    builder_tag: str = ""
    builder_image_id: str = ""

    @property
    def created(self) -> str:
        return datetime.fromtimestamp(self.source_date_epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def distro(suite: str) -> str:
    return f"debian-{DEBIAN_RELEASES.get(suite, suite)}"


def _encode(value: str) -> str:
    """purl percent-encoding: everything but unreserved characters (':' and '+' included) is encoded."""
    return quote(value, safe="._-~")


def purl(package: Package, suite: str) -> str:
    qualifiers = {"arch": package.architecture, "distro": distro(suite)}
    query = "&".join(f"{key}={_encode(value)}" for key, value in sorted(qualifiers.items()) if value)
    return f"pkg:deb/debian/{_encode(package.name.lower())}@{_encode(package.version)}?{query}"


def _canonical(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def render(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _spdx_id(prefix: str, text: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:60]
    return f"SPDXRef-{prefix}-{readable}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _sorted_packages(inventory: Inventory) -> list[Package]:
    return sorted(inventory.packages.values(), key=lambda p: (p.name, p.version, p.architecture))


def _containers(inventory: Inventory) -> dict[str, list[str]]:
    """package key -> the artifacts that contain it."""
    found: dict[str, list[str]] = {}
    for artifact in sorted(inventory.contains):
        for key in inventory.contains[artifact]:
            found.setdefault(key, []).append(artifact)
    return found


def _comment(package: Package, containers: list[str], build_tool: bool) -> str:
    parts = [package.note] if package.note else []
    if containers:
        parts.append("in " + ", ".join(containers))
    if build_tool:
        parts.append("installed in the builder image (a build tool)")
    return "; ".join(parts)


def spdx_document(facts: BuildFacts, inventory: Inventory) -> dict[str, Any]:
    containers = _containers(inventory)
    artifact_ids = {name: _spdx_id("Artifact", name) for name in facts.artifacts}
    packages: list[dict[str, Any]] = []
    relationships: list[dict[str, str]] = []
    for name in sorted(facts.artifacts):
        packages.append({
            "SPDXID": artifact_ids[name], "name": name, "versionInfo": facts.artifacts[name][:12],
            "primaryPackagePurpose": "ARCHIVE" if name.endswith(".tar") else "FILE",
            "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "supplier": "NOASSERTION",
            "checksums": [{"algorithm": "SHA256", "checksumValue": facts.artifacts[name]}],
            "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION", "copyrightText": "NOASSERTION",
            "comment": f"artifact of bootkiln profile {facts.profile}",
        })
        relationships.append({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                              "relatedSpdxElement": artifact_ids[name]})
    refs: set[str] = set()
    package_ids: dict[str, str] = {}
    for package in _sorted_packages(inventory):
        spdx_id = package_ids[package.key] = _spdx_id("deb", package.key)
        entry: dict[str, Any] = {
            "SPDXID": spdx_id, "name": package.name, "versionInfo": package.version,
            "supplier": "Organization: Debian", "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
            "licenseConcluded": "NOASSERTION", "licenseDeclared": package.licence or "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": purl(package, facts.suite)}],
            "primaryPackagePurpose": "SOURCE" if package.kind == "source" else "INSTALL",
        }
        if package.sha256:
            entry["checksums"] = [{"algorithm": "SHA256", "checksumValue": package.sha256}]
        if package.source:
            entry["sourceInfo"] = f"built from Debian source package {package.source} {package.source_version}"
        comment = _comment(package, containers.get(package.key, []), package.key in inventory.build_tools)
        if package.applets:
            comment += f"; applets: {' '.join(package.applets)}"
        if comment:
            entry["comment"] = comment
        refs |= licence_refs(package.licence or "")
        packages.append(entry)
        for artifact in containers.get(package.key, []):
            relationships.append({"spdxElementId": artifact_ids[artifact], "relationshipType": "CONTAINS",
                                  "relatedSpdxElement": spdx_id})
    if facts.builder_image_id:
        builder_id = "SPDXRef-BuilderImage"
        packages.append({
            "SPDXID": builder_id, "name": facts.builder_tag or "bootkiln-builder",
            "versionInfo": facts.builder_image_id, "primaryPackagePurpose": "CONTAINER",
            "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "supplier": "NOASSERTION",
            "checksums": [{"algorithm": "SHA256", "checksumValue": facts.builder_image_id.removeprefix("sha256:")}],
            "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION", "copyrightText": "NOASSERTION",
            "comment": "the builder container image every Debian step ran in (its ID is the sha256 of its config)",
        })
        for key in sorted(inventory.build_tools):
            relationships.append({"spdxElementId": builder_id, "relationshipType": "CONTAINS",
                                  "relatedSpdxElement": package_ids[key]})
        for name in sorted(facts.artifacts):
            relationships.append({"spdxElementId": builder_id, "relationshipType": "BUILD_TOOL_OF",
                                  "relatedSpdxElement": artifact_ids[name]})
    document: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"bootkiln-{facts.profile}",
        "creationInfo": {"created": facts.created, "creators": [f"Tool: bootkiln-{facts.bootkiln_version}"],
                         "comment": "created at the archive's SOURCE_DATE_EPOCH, not the clock"},
        "packages": packages,
        "relationships": relationships,
    }
    if refs:
        document["hasExtractedLicensingInfos"] = [
            {"licenseId": ref, "name": ref.removeprefix("LicenseRef-"),
             "extractedText": f"The licence Debian's machine-readable copyright files call "
                              f"'{ref.removeprefix('LicenseRef-')}'; its text is in /usr/share/doc/<package>/copyright "
                              "of each package that names it."} for ref in sorted(refs)]
    digest = hashlib.sha256(_canonical(document)).hexdigest()
    document["documentNamespace"] = f"{NAMESPACE_BASE}/{facts.profile}-{digest}"
    return document


def _serial(content: bytes) -> str:
    return f"urn:uuid:{uuid.UUID(bytes=hashlib.sha256(content).digest()[:16], version=5)}"


def cyclonedx_document(facts: BuildFacts, inventory: Inventory) -> dict[str, Any]:
    containers = _containers(inventory)
    components: list[dict[str, Any]] = []
    dependencies: list[dict[str, Any]] = []
    package_refs: dict[str, str] = {}
    for name in sorted(facts.artifacts):
        components.append({"type": "file", "bom-ref": f"artifact:{name}", "name": name,
                           "hashes": [{"alg": "SHA-256", "content": facts.artifacts[name]}]})
    for package in _sorted_packages(inventory):
        package_url = purl(package, facts.suite)
        package_refs[package.key] = package_url
        build_tool_only = package.key in inventory.build_tools and not containers.get(package.key)
        properties = [{"name": "bootkiln:architecture", "value": package.architecture}]
        if package.source:
            properties += [{"name": "bootkiln:source-package", "value": package.source},
                           {"name": "bootkiln:source-version", "value": package.source_version or ""}]
        if package.key in inventory.build_tools:
            properties.append({"name": "bootkiln:role", "value": "build-tool"})
        if package.applets:
            properties.append({"name": "bootkiln:applets", "value": " ".join(package.applets)})
        component: dict[str, Any] = {
            "type": "library", "bom-ref": package_url, "name": package.name, "version": package.version,
            "publisher": "Debian", "purl": package_url, "properties": properties,
        }
        if build_tool_only:
            component["scope"] = "excluded"
        if package.sha256:
            component["hashes"] = [{"alg": "SHA-256", "content": package.sha256}]
        if package.licence:
            component["licenses"] = [{"expression": package.licence}]
        description = _comment(package, containers.get(package.key, []), package.key in inventory.build_tools)
        if description:
            component["description"] = description
        components.append(component)
    for artifact in sorted(facts.artifacts):
        contained = sorted(package_refs[key] for key in inventory.contains.get(artifact, set()))
        dependencies.append({"ref": f"artifact:{artifact}", "dependsOn": contained})
    if facts.builder_image_id:
        components.append({"type": "container", "bom-ref": "builder-image",
                           "name": facts.builder_tag or "bootkiln-builder", "version": facts.builder_image_id,
                           "hashes": [{"alg": "SHA-256",
                                       "content": facts.builder_image_id.removeprefix("sha256:")}],
                           "description": "the builder container image every Debian step ran in"})
        dependencies.append({"ref": "builder-image",
                             "dependsOn": sorted(package_refs[key] for key in inventory.build_tools)})
    dependencies.append({"ref": f"profile:{facts.profile}",
                         "dependsOn": [f"artifact:{name}" for name in sorted(facts.artifacts)]})
    document: dict[str, Any] = {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
        "metadata": {
            "timestamp": facts.created,
            "tools": {"components": [{"type": "application", "name": "bootkiln",
                                      "version": facts.bootkiln_version}]},
            "component": {"type": "operating-system", "bom-ref": f"profile:{facts.profile}",
                          "name": f"bootkiln-{facts.profile}",
                          "description": f"the artifacts of bootkiln profile {facts.profile}"},
        },
        "components": components,
        "dependencies": sorted(dependencies, key=lambda d: d["ref"]),
    }
    document["serialNumber"] = _serial(_canonical(document))
    return document
