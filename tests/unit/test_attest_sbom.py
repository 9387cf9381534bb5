"""SBOMs: valid by the reference validators, complete against the rootfs's packages, byte-for-byte stable."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
from tests.support.attested import BUILDER_REPORT, DEP5, ROOTFS_PACKAGES, make_build_folder

from bootkiln.attest.licences import licences_from_copyright, spdx_expression
from bootkiln.attest.packages import Package, parse_dpkg_status
from bootkiln.attest.sbom import purl


@pytest.fixture
def build(tmp_path: Path) -> Path:
    return make_build_folder(tmp_path / "out", None).out


def spdx_problems(path: Path) -> list[str]:
    return [message.validation_message for message in validate_full_spdx_document(parse_file(str(path)))]


def test_the_reference_validators_accept_both_sboms(build: Path) -> None:
    assert spdx_problems(build / "sbom.spdx.json") == []
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str((build / "sbom.cdx.json").read_text()) is None


def test_the_validators_are_not_a_formality(build: Path, tmp_path: Path) -> None:
    """The same checks do fail on a broken document, so a pass above means something."""
    spdx = json.loads((build / "sbom.spdx.json").read_text())
    spdx["packages"][0]["checksums"][0]["checksumValue"] = "not-hex"
    spdx["relationships"].append({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "CONTAINS",
                                  "relatedSpdxElement": "SPDXRef-nothing"})
    (tmp_path / "broken.spdx.json").write_text(json.dumps(spdx))
    assert spdx_problems(tmp_path / "broken.spdx.json")
    cdx = json.loads((build / "sbom.cdx.json").read_text())
    cdx["components"][0]["hashes"][0]["alg"] = "SHA-255"
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(cdx)) is not None


def _rootfs_packages(build: Path) -> set[tuple[str, str, str]]:
    with tarfile.open(build / "rootfs.tar") as archive:
        member = archive.extractfile("./var/lib/dpkg/status")
        assert member is not None
        status = member.read().decode()
    return {(name, version, arch) for (name, arch), (version, _, _) in parse_dpkg_status(status).items()}


def test_the_rootfs_packages_are_exactly_the_ones_the_sbom_says_it_contains(build: Path) -> None:
    spdx = json.loads((build / "sbom.spdx.json").read_text())
    by_id = {package["SPDXID"]: package for package in spdx["packages"]}
    rootfs_id = next(p["SPDXID"] for p in spdx["packages"] if p["name"] == "rootfs.tar")
    contained = {by_id[r["relatedSpdxElement"]]["externalRefs"][0]["referenceLocator"]
                 for r in spdx["relationships"] if r["spdxElementId"] == rootfs_id and
                 r["relationshipType"] == "CONTAINS"}
    expected = {purl(Package(name, version, arch), "bookworm") for name, version, arch in _rootfs_packages(build)}
    assert contained == expected
    cdx = json.loads((build / "sbom.cdx.json").read_text())
    depends = {d["ref"]: set(d["dependsOn"]) for d in cdx["dependencies"]}
    assert depends["artifact:rootfs.tar"] == expected


def test_each_package_has_its_facts(build: Path) -> None:
    cdx = json.loads((build / "sbom.cdx.json").read_text())
    components = {(c["name"], c.get("version")): c for c in cdx["components"] if c["type"] == "library"}
    bash = components[("bash", "5.2.15-2+b7")]
    assert bash["hashes"] == [{"alg": "SHA-256", "content": "c" * 64}]
    assert bash["licenses"] == [{"expression": "GPL-3.0-or-later"}]
    properties = {p["name"]: p["value"] for p in bash["properties"]}
    assert properties["bootkiln:source-package"] == "bash" and properties["bootkiln:source-version"] == "5.2.15-2"
    libc = components[("libc6", "2.36-9+deb12u7")]
    assert libc["licenses"] == [{"expression": "GPL-2.0-or-later AND LGPL-2.1-or-later"}]
    assert "build-tool" in {p["value"] for p in libc["properties"]}, "libc6 is in the rootfs and the builder"
    assert "licenses" not in components[("libstdc++6", "12.2.0-14")], "not DEP-5: NOASSERTION, never a guess"
    kernel = components[("linux-image-6.1.0-50-amd64", "6.1.176-1")]
    assert kernel["hashes"][0]["content"] == "7" * 64
    busybox = components[("busybox", "1:1.35.0-4+deb12u1")]
    assert "?arch=source" in busybox["purl"] and "3 applets" in busybox["description"]
    assert {p["name"]: p["value"] for p in busybox["properties"]}["bootkiln:applets"] == "ls sh udhcpc"
    depends = {d["ref"]: set(d["dependsOn"]) for d in cdx["dependencies"]}
    assert kernel["purl"] in depends["artifact:boot.iso"] and busybox["purl"] in depends["artifact:initrd.img"]
    assert components[("isolinux", "3:6.04~git20190206.bf6db5b4+dfsg1-3")]["purl"] in depends["artifact:boot.iso"]
    dpkg = components[("dpkg", "1.21.22")]
    assert dpkg["scope"] == "excluded" and dpkg["licenses"] == [{"expression": "GPL-2.0-or-later"}]
    assert depends["builder-image"] >= {dpkg["purl"], libc["purl"]}
    spdx = json.loads((build / "sbom.spdx.json").read_text())
    declared = {p["name"]: p["licenseDeclared"] for p in spdx["packages"]}
    assert declared["tzdata"] == "LicenseRef-public-domain" and declared["libstdc++6"] == "NOASSERTION"
    assert len(BUILDER_REPORT) > 3


def test_boot_packages_are_the_targets_and_their_tools_the_builders() -> None:
    """bootloader-packages.tsv and uki-packages.tsv: fetched target packages carry their architecture and
    .deb sha256 whatever the builder is; the builder's tools are build tools of the builder's architecture."""
    from bootkiln.attest.packages import Package, collect

    metadata = {"bootloader": {"sha256": {"efiboot.img": "1" * 64}}, "uki": {"sha256": {"uki-iso.efi": "2" * 64}},
                "iso": {"sha256": {"boot.iso": "3" * 64}}}
    arm64_builder: tuple[list[Package], dict[str, str | None]] = (
        [Package("mtools", "4.0.33-1", "arm64"), Package("grub-pc-bin", "2.06-13", "arm64")], {})
    found = collect(metadata, {"bootloader": {"iso"}, "uki": {"iso"}}, {"efiboot.img", "uki-iso.efi", "boot.iso"},
                    "amd64", bootloader_tsv=f"grub-pc-bin\t2.06-13\tamd64\t{'4' * 64}\nmtools\t4.0.33-1\n",
                    uki_tsv=f"systemd-boot-efi\t252.39-1\tamd64\t{'5' * 64}\n", builder=arm64_builder)
    grub = found.packages["grub-pc-bin@2.06-13:amd64"]
    assert grub.sha256 == "4" * 64 and "grub-pc-bin@2.06-13:amd64" not in found.from_builder
    assert found.packages["systemd-boot-efi@252.39-1:amd64"].sha256 == "5" * 64
    assert "mtools@4.0.33-1:arm64" in found.from_builder, "a tool is the builder's own"


def test_purls_are_percent_encoded_and_parse_back() -> None:
    package = Package("isolinux", "3:6.04~git20190206.bf6db5b4+dfsg1-3", "all")
    text = purl(package, "bookworm")
    assert text == "pkg:deb/debian/isolinux@3%3A6.04~git20190206.bf6db5b4%2Bdfsg1-3?arch=all&distro=debian-12"
    parsed = PackageURL.from_string(text)
    assert (parsed.type, parsed.namespace, parsed.name, parsed.version) == ("deb", "debian", "isolinux",
                                                                            package.version)
    assert parsed.qualifiers == {"arch": "all", "distro": "debian-12"}
    assert PackageURL.from_string(purl(Package("libstdc++6", "12.2.0-14", "amd64"), "trixie")).name == "libstdc++6"


def test_two_renders_are_byte_identical_and_ids_follow_the_content(tmp_path: Path) -> None:
    first = make_build_folder(tmp_path / "a", None).out
    second = make_build_folder(tmp_path / "b", None).out
    for name in ("sbom.spdx.json", "sbom.cdx.json", "provenance.intoto.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    other = make_build_folder(tmp_path / "c", None, iso=b"another ISO").out
    spdx = [json.loads((folder / "sbom.spdx.json").read_text()) for folder in (first, other)]
    assert spdx[0]["documentNamespace"] != spdx[1]["documentNamespace"]
    assert spdx[0]["creationInfo"]["created"] == "2023-11-14T22:13:20Z", "SOURCE_DATE_EPOCH, not the clock"
    cdx = [json.loads((folder / "sbom.cdx.json").read_text()) for folder in (first, other)]
    assert cdx[0]["serialNumber"] != cdx[1]["serialNumber"]
    assert cdx[0]["metadata"]["timestamp"] == "2023-11-14T22:13:20Z"


def test_sboms_and_provenance_are_listed_in_sha256sums_and_the_manifest(build: Path) -> None:
    lines = (build / "SHA256SUMS").read_text().splitlines()
    sums = {name: digest for digest, name in (line.split("  ") for line in lines)}
    assert {"sbom.spdx.json", "sbom.cdx.json", "provenance.intoto.json"} <= set(sums)
    manifest = json.loads((build / "manifest.json").read_text())
    assert manifest["attestations"]["sboms"] == {n: sums[n] for n in ("sbom.spdx.json", "sbom.cdx.json")}
    assert manifest["attestations"]["provenance"] == "provenance.intoto.json"
    assert manifest["attestations"]["signed"] is False


@pytest.mark.parametrize(("debian", "spdx"), [
    ("GPL-2+", "GPL-2.0-or-later"),
    ("GPL-2+ or Artistic", "GPL-2.0-or-later OR Artistic-1.0-Perl"),
    ("LGPL-2.1+ and BSD-3-clause", "LGPL-2.1-or-later AND BSD-3-Clause"),
    ("Expat", "MIT"),
    ("GPL-2+ with OpenSSL exception", "LicenseRef-GPL-2-with-OpenSSL-exception"),
    ("permissive/odd name", "LicenseRef-permissive-odd-name"),
])
def test_debian_licence_names_become_spdx_expressions(debian: str, spdx: str) -> None:
    assert spdx_expression(debian) == spdx


def test_only_machine_readable_copyright_files_give_licences() -> None:
    assert licences_from_copyright("This is free software, GPL.\nLicense: GPL-2\n") is None
    text = DEP5 + "\nFiles: *\nCopyright: a\nLicense: GPL-2+\n\nFiles: x/*\nLicense: Expat\n\nLicense: GPL-2+\n text\n"
    assert licences_from_copyright(text) == "GPL-2.0-or-later AND MIT"
    assert {row[0] for row in ROOTFS_PACKAGES} >= {"bash", "libc6"}
