"""The SBOM's .deb digests and source packages from the pinned archive's Packages index, verified first."""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
from tests.support.attested import make_build_folder
from tests.support.fake_archive import Entry, pinned_state, serve, write_archive

from bootkiln.attest.archive_index import ArchiveIndex, IndexEntry, parse_packages, release_checksums
from bootkiln.errors import EnvironmentProblem

KERNEL = ("linux-image-6.1.0-50-amd64", "6.1.176-1", "amd64", "7" * 64, "linux-signed-amd64 (6.1.176+1)")
ISOLINUX = ("isolinux", "3:6.04~git20190206.bf6db5b4+dfsg1-3", "all", "1" * 64, "syslinux")
DPKG = ("dpkg", "1.21.22", "amd64", "2" * 64, "")
LIBC = ("libc6", "2.36-9+deb12u7", "amd64", "b" * 64, "glibc")
DEBIAN: dict[str, list[Entry]] = {"main/binary-amd64": [KERNEL, ISOLINUX, DPKG, LIBC],
                                  "main/binary-arm64": [("dpkg", "1.21.22", "arm64", "3" * 64, "")]}


def _index(entries: dict[str, list[Entry]]) -> dict[str, list[Entry]]:
    return {key.replace("binary-", ""): value for key, value in entries.items()}


def _components(cdx_path: Path) -> dict[str, dict[str, Any]]:
    cdx = json.loads(cdx_path.read_text())
    return {c["name"]: c for c in cdx["components"] if c["type"] == "library"}


def _properties(component: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in component["properties"]}


def test_packages_fields_source_with_and_without_a_version() -> None:
    text = ("Package: a\nVersion: 1.0-1+b1\nArchitecture: amd64\nSource: a-src (1.0-1)\nSHA256: " + "a" * 64
            + "\nDescription: x\n two lines\n\nPackage: b\nSource: b-src\nVersion: 2\nArchitecture: all\nSHA256: "
            + "b" * 64 + "\n\nPackage: c\nVersion: 3\nArchitecture: arm64\nSHA256: " + "c" * 64
            + "\n\nPackage: no-digest\nVersion: 1\nArchitecture: amd64\n")
    entries = parse_packages(text)
    assert entries == {"a\t1.0-1+b1\tamd64": f"{'a' * 64}\ta-src\t1.0-1", "b\t2\tall": f"{'b' * 64}\tb-src\t2",
                       "c\t3\tarm64": f"{'c' * 64}\tc\t3"}


def test_release_checksums_come_from_the_sha256_section_only() -> None:
    release = ("Suite: bookworm\nMD5Sum:\n " + "0" * 32 + " 10 main/binary-amd64/Packages.xz\nSHA256:\n "
               + "a" * 64 + " 10 main/binary-amd64/Packages.xz\n " + "b" * 64 + " 20 contrib/Contents-all\n"
               "-----BEGIN PGP SIGNATURE-----\n")
    assert release_checksums(release) == {"main/binary-amd64/Packages.xz": ("a" * 64, 10),
                                          "contrib/Contents-all": ("b" * 64, 20)}


def test_builder_boot_loader_and_kernel_packages_get_digest_and_source_from_a_served_archive(
        tmp_path: Path) -> None:
    release = write_archive(tmp_path / "mirror", "bookworm", _index(DEBIAN))
    with serve(tmp_path / "mirror") as url:
        state = pinned_state(url, "bookworm", release)
        cache = tmp_path / "cache"
        index = ArchiveIndex(state, ["main"], cache, delays=())
        build = make_build_folder(tmp_path / "out", None, archive_index=index,
                                  builder_archive_index=ArchiveIndex(state, ["main"], cache, delays=()))
    out = build.out
    components = _components(out / "sbom.cdx.json")
    kernel = components["linux-image-6.1.0-50-amd64"]
    assert _properties(kernel)["bootkiln:source-package"] == "linux-signed-amd64"
    assert _properties(kernel)["bootkiln:source-version"] == "6.1.176+1"
    assert components["isolinux"]["hashes"] == [{"alg": "SHA-256", "content": "1" * 64}], "all: in amd64's index"
    assert components["dpkg"]["hashes"] == [{"alg": "SHA-256", "content": "2" * 64}], "the builder is amd64"
    assert _properties(components["dpkg"])["bootkiln:source-package"] == "dpkg"
    spdx = json.loads((out / "sbom.spdx.json").read_text())
    kernel_spdx = next(p for p in spdx["packages"] if p["name"] == KERNEL[0])
    assert kernel_spdx["sourceInfo"] == "built from Debian source package linux-signed-amd64 6.1.176+1"
    assert [p.validation_message for p in validate_full_spdx_document(parse_file(str(out / "sbom.spdx.json")))] == []
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str((out / "sbom.cdx.json").read_text()) is None
    cached = sorted(path.name for path in cache.iterdir())
    assert cached == [f"packages-{state.release_sha256}-main-amd64.json"], "arm64 was never needed"

    def offline(url: str) -> bytes:
        raise AssertionError(f"fetched {url}: the parsed index is cached per Release sha256")

    state_with_bytes = pinned_state("http://127.0.0.1:9", "bookworm", release, keep_bytes=True)
    again = make_build_folder(tmp_path / "again", None,
                              archive_index=ArchiveIndex(state_with_bytes, ["main"], cache, fetch=offline),
                              builder_archive_index=ArchiveIndex(state_with_bytes, ["main"], cache, fetch=offline))
    for name in ("sbom.spdx.json", "sbom.cdx.json"):
        assert (again.out / name).read_bytes() == (out / name).read_bytes(), name


def test_without_the_archive_the_digests_stay_unknown(tmp_path: Path) -> None:
    """The same build without index: the gaps this module closes are really gaps (the test above can fail)."""
    components = _components(make_build_folder(tmp_path / "out", None).out / "sbom.cdx.json")
    assert "hashes" not in components["dpkg"] and "hashes" not in components["isolinux"]
    assert "bootkiln:source-package" not in _properties(components["linux-image-6.1.0-50-amd64"])


def test_a_tampered_index_is_refused_and_never_cached(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    release = write_archive(mirror, "bookworm", _index(DEBIAN))
    packages = mirror / "dists/bookworm/main/binary-amd64/Packages.xz"
    text = lzma.decompress(packages.read_bytes()).decode().replace("2" * 64, "6" * 64)
    packages.unlink()
    packages.write_bytes(lzma.compress(text.encode()))
    with serve(mirror) as url:
        index = ArchiveIndex(pinned_state(url, "bookworm", release), ["main"], tmp_path / "cache", delays=())
        with pytest.raises(EnvironmentProblem) as refused:
            index.lookup("dpkg", "1.21.22", "amd64", "amd64")
    assert "Packages.xz does not match the pinned Release file" in refused.value.message
    assert "refusing" in refused.value.message and refused.value.hint
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_release_file_other_than_the_pinned_one_is_refused(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    pinned = write_archive(mirror, "bookworm", _index(DEBIAN))
    write_archive(mirror, "bookworm", {"main/amd64": [DPKG]})  # the mirror moved on since the build
    index = ArchiveIndex(pinned_state(mirror.as_uri(), "bookworm", pinned), ["main"], tmp_path / "cache", delays=())
    with pytest.raises(EnvironmentProblem, match=r"not the .* this build pinned"):
        index.lookup("dpkg", "1.21.22", "amd64", "amd64")


def test_the_builder_suite_is_looked_up_in_its_own_archive_state(tmp_path: Path) -> None:
    """The builder is trixie's, the profile bookworm's: each package is found in the right one only."""
    mirror = tmp_path / "mirror"
    bookworm = write_archive(mirror, "bookworm", {"main/amd64": [KERNEL, LIBC]})
    trixie = write_archive(mirror, "trixie", {"main/amd64": [DPKG, ISOLINUX, ("libc6", "2.36-9+deb12u7", "amd64",
                                                                            "4" * 64, "glibc")]})
    build = make_build_folder(
        tmp_path / "out", None,
        archive_index=ArchiveIndex(pinned_state(mirror.as_uri(), "bookworm", bookworm), ["main"], delays=()),
        builder_archive_index=ArchiveIndex(pinned_state(mirror.as_uri(), "trixie", trixie), ["main"], delays=()))
    components = _components(build.out / "sbom.cdx.json")
    assert components["dpkg"]["hashes"][0]["content"] == "2" * 64
    assert components["isolinux"]["hashes"][0]["content"] == "1" * 64
    assert components["libc6"]["hashes"][0]["content"] == "b" * 64, "packages.tsv's digest is kept"
    assert _properties(components[KERNEL[0]])["bootkiln:source-package"] == "linux-signed-amd64"


def test_a_local_kernel_deb_that_is_not_the_archives_takes_nothing_from_it(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    release = write_archive(mirror, "bookworm", _index(DEBIAN))
    state = pinned_state(mirror.as_uri(), "bookworm", release)
    build = make_build_folder(tmp_path / "out", None, kernel_sha256="8" * 64,
                              archive_index=ArchiveIndex(state, ["main"], delays=()),
                              builder_archive_index=ArchiveIndex(state, ["main"], delays=()))
    kernel = _components(build.out / "sbom.cdx.json")[KERNEL[0]]
    assert kernel["hashes"][0]["content"] == "8" * 64, "the kernel stage's own digest of the local .deb"
    assert "bootkiln:source-package" not in _properties(kernel), "NOASSERTION, not the archive's package"


def test_a_package_the_index_does_not_list_at_its_version_stays_unknown(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    older = ("linux-image-6.1.0-50-amd64", "6.1.170-1", "amd64", "7" * 64, "linux-signed-amd64")
    release = write_archive(mirror, "bookworm", {"main/amd64": [older]})
    index = ArchiveIndex(pinned_state(mirror.as_uri(), "bookworm", release), ["main", "contrib"], delays=())
    assert index.lookup(KERNEL[0], KERNEL[1], "amd64", "amd64") is None
    assert index.lookup(*older[:3], "amd64") == IndexEntry("7" * 64, "linux-signed-amd64", "6.1.170-1")
    assert index.lookup("busybox", "1:1.35.0-4", "source", "amd64") is None


def test_a_snapshots_release_file_is_fetched_once(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    write_archive(mirror, "bookworm", _index(DEBIAN))
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        with urllib.request.urlopen(url) as response:  # noqa: S310 - a file:// URL made here
            return bytes(response.read())

    for _ in range(2):
        state = pinned_state(mirror.as_uri(), "bookworm", b"")
        state = type(state)(mirror=state.mirror, suite="bookworm", snapshot="20231114T221320Z", release_sha256=None,
                            release_epoch=0, source_date_epoch=0)
        index = ArchiveIndex(state, ["main"], tmp_path / "cache", fetch=fetch, delays=())
        assert index.lookup("dpkg", "1.21.22", "arm64", "amd64") == IndexEntry("3" * 64, "dpkg", "1.21.22")
    assert len(fetched) == 2 and fetched[0].endswith("/InRelease"), fetched


def test_a_listed_form_the_mirror_lacks_falls_back_to_the_next(tmp_path: Path) -> None:
    """The Release file lists Packages.xz and Packages.gz; the mirror keeps only the .gz (verified too)."""
    mirror = tmp_path / "mirror"
    write_archive(mirror, "bookworm", {"main/amd64": [DPKG]})
    folder = mirror / "dists/bookworm/main/binary-amd64"
    text = lzma.decompress((folder / "Packages.xz").read_bytes())
    (folder / "Packages.xz").unlink()
    gz = gzip.compress(text, mtime=0)
    (folder / "Packages.gz").write_bytes(gz)
    release = (mirror / "dists/bookworm/InRelease").read_text().replace(
        "\n-----BEGIN PGP SIGNATURE", f"\n {hashlib.sha256(gz).hexdigest()} {len(gz)} main/binary-amd64/Packages.gz"
        "\n-----BEGIN PGP SIGNATURE").encode()
    index = ArchiveIndex(pinned_state(mirror.as_uri(), "bookworm", release, keep_bytes=True), ["main"], delays=())
    assert index.lookup("dpkg", "1.21.22", "amd64", "amd64") == IndexEntry("2" * 64, "dpkg", "1.21.22")
