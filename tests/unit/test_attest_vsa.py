"""verify-reproducible's Verification Summary Attestation, and how two builds' provenance files compare."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
from tests.support.attested import make_build_folder

from bootkiln.attest.keys import generate_key_pair, keyid, load_private_key, load_public_key
from bootkiln.attest.verify import read_statement
from bootkiln.attest.vsa import VSA_TYPE
from bootkiln.console import Reporter
from bootkiln.profile.schema import Profile
from bootkiln.verify.reproduce import CONDITIONS, ArtifactCheck, compare_outputs, write_vsa

CHECKS = [ArtifactCheck("boot.iso", "a" * 64, "a" * 64), ArtifactCheck("rootfs.tar", "b" * 64, "b" * 64),
          ArtifactCheck("sbom.spdx.json", "c" * 64, "c" * 64),
          ArtifactCheck("provenance.dsse.json", "d" * 64, "e" * 64, equivalent=True)]


def test_a_signed_vsa_names_what_was_reproduced_and_under_which_differences(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private, public = generate_key_pair(tmp_path / "keys", "ecdsa-p256")
    monkeypatch.setenv("BOOTKILN_SIGNING_KEY", str(private))
    path = write_vsa(Profile(), CHECKS, tmp_path / "out", Reporter())
    assert path.name == "reproducible.vsa.dsse.json"
    key = load_public_key(public)
    envelope = Envelope.from_dict(json.loads(path.read_text()))
    envelope.verify([SSlibKey.from_crypto(key, keyid=keyid(key))], 1)  # an independent implementation
    statement, signed = read_statement(path, key, VSA_TYPE)
    assert signed
    assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"]} == {
        "boot.iso": "a" * 64, "rootfs.tar": "b" * 64, "sbom.spdx.json": "c" * 64}
    predicate = statement["predicate"]
    assert predicate["verificationResult"] == "PASSED"
    assert predicate["resourceUri"] == "urn:bootkiln:profile:default"
    assert {"time", "TZ", "locale", "umask", "path"} <= set(predicate["reproducibility"]["varied"])
    recorded = predicate["reproducibility"]["conditions"]
    assert [c["TZ"] for c in recorded] == [c.tz for c in CONDITIONS]
    assert [c["umask"] for c in recorded] == [c.umask for c in CONDITIONS]
    assert [c["path"] for c in recorded] == [c.folder for c in CONDITIONS]
    assert predicate["inputAttestations"][0]["digest"]["sha256"] == "d" * 64
    assert private.read_text().splitlines()[1] not in path.read_text()


def test_an_unsigned_vsa_without_a_key_and_a_failure_is_recorded(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOOTKILN_SIGNING_KEY", raising=False)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "reproducible.vsa.dsse.json").write_text("stale")
    checks = [*CHECKS, ArtifactCheck("disk.img", "f" * 64, "0" * 64)]
    path = write_vsa(Profile(), checks, tmp_path / "out", Reporter())
    assert path.name == "reproducible.vsa.intoto.json"
    assert not (tmp_path / "out" / "reproducible.vsa.dsse.json").exists(), "a stale signed VSA would mislead"
    statement, signed = read_statement(path, None, VSA_TYPE)
    assert not signed
    assert statement["predicate"]["verificationResult"] == "FAILED"
    assert statement["predicate"]["reproducibility"]["differing"] == ["disk.img"]
    assert "disk.img" not in {s["name"] for s in statement["subject"]}


def test_two_builds_provenance_compares_by_the_artifacts_it_attests(tmp_path: Path) -> None:
    """ECDSA signatures differ each time, and the manifest records the checkout: neither is a difference."""
    private, _ = generate_key_pair(tmp_path / "keys", "ecdsa-p256")
    key = load_private_key(private)
    first = make_build_folder(tmp_path / "first", key).out
    second = make_build_folder(tmp_path / "second", key).out
    assert (first / "provenance.dsse.json").read_bytes() != (second / "provenance.dsse.json").read_bytes()
    checks = {check.name: check for check in compare_outputs(first, second)}
    assert all(check.matches for check in checks.values()), checks
    third = make_build_folder(tmp_path / "third", key, iso=b"a different ISO").out
    checks = {check.name: check for check in compare_outputs(first, third)}
    assert not checks["provenance.dsse.json"].matches and not checks["boot.iso"].matches
    envelope = json.loads((third / "provenance.dsse.json").read_text())
    assert b"boot.iso" in base64.b64decode(envelope["payload"])


def test_a_vsa_of_builds_by_two_builder_architectures_says_so(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOOTKILN_SIGNING_KEY", raising=False)
    path = write_vsa(Profile(), CHECKS, tmp_path / "out", Reporter(), builder_arch="arm64")
    statement, _ = read_statement(path, None, VSA_TYPE)
    reproducibility = statement["predicate"]["reproducibility"]
    assert "builder architecture" in reproducibility["varied"]
    assert [c.get("builder_arch") for c in reproducibility["conditions"]] == [None, "arm64"]


def _retool(out: Path, change: Callable[[str], str]) -> None:
    """Rewrite a build's SPDX SBOM as a build by another builder would differ, and its SHA256SUMS line."""
    sbom = out / "sbom.spdx.json"
    sbom.write_text(change(sbom.read_text()))
    digest = hashlib.sha256(sbom.read_bytes()).hexdigest()
    sums = out / "SHA256SUMS"
    sums.write_text("".join(f"{digest}  sbom.spdx.json\n" if line.endswith("  sbom.spdx.json") else f"{line}\n"
                            for line in sums.read_text().splitlines()))


def test_across_builder_architectures_sboms_match_by_the_artifacts_they_describe(tmp_path: Path) -> None:
    first = make_build_folder(tmp_path / "first", None).out
    second = make_build_folder(tmp_path / "second", None).out
    _retool(second, lambda text: text.replace('"dataLicense"', '"comment": "builder arm64", "dataLicense"', 1))
    assert not {c.name: c for c in compare_outputs(first, second)}["sbom.spdx.json"].matches
    across = {c.name: c for c in compare_outputs(first, second, builders_differ=True)}
    assert all(check.matches for check in across.values()), across
    assert "both describe the same artifacts" in across["sbom.spdx.json"].details
    assert "boot.iso" in across["sbom.spdx.json"].details
    sums = (second / "SHA256SUMS").read_text().splitlines()
    iso = next(line.split()[0] for line in sums if line.endswith("  boot.iso"))
    _retool(second, lambda text: text.replace(iso, "0" * 64))
    other = {c.name: c for c in compare_outputs(first, second, builders_differ=True)}
    assert not other["sbom.spdx.json"].matches
    assert "describe different artifacts" in other["sbom.spdx.json"].details
