"""Checking a build folder against its provenance, and every way it must refuse one."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
from tests.support.attested import AttestedBuild, make_build_folder

from bootkiln.attest.keys import generate_key_pair, keyid, load_private_key, load_public_key
from bootkiln.attest.verify import verify_folder, verify_manifest
from bootkiln.console import Reporter
from bootkiln.errors import InputError
from bootkiln.hashing import sha256_file
from bootkiln.verify.reproduce import rebuild

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["ed25519", "ecdsa-p256"])
def key_pair(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    return generate_key_pair(tmp_path / "keys", request.param)


@pytest.fixture
def signed(tmp_path: Path, key_pair: tuple[Path, Path]) -> AttestedBuild:
    return make_build_folder(tmp_path / "out", load_private_key(key_pair[0]))


def test_a_signed_folder_verifies(signed: AttestedBuild, key_pair: tuple[Path, Path]) -> None:
    public = load_public_key(key_pair[1])
    verified = verify_folder(signed.out, "default", public)
    assert verified.signed and verified.keyid == keyid(public)
    assert {"boot.iso", "rootfs.tar", "manifest.json", "sbom.spdx.json", "sbom.cdx.json"} <= set(verified.checked)
    assert not (signed.out / "provenance.intoto.json").exists()


def test_securesystemslib_verifies_the_build_provenance(signed: AttestedBuild, key_pair: tuple[Path, Path]) -> None:
    public = load_public_key(key_pair[1])
    envelope = Envelope.from_dict(json.loads((signed.out / "provenance.dsse.json").read_text()))
    envelope.verify([SSlibKey.from_crypto(public, keyid=keyid(public))], 1)
    statement = json.loads(envelope.payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert subjects["boot.iso"] == signed.listed["boot.iso"]
    definition = statement["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["profileName"] == "default"
    assert definition["internalParameters"]["archive"]["release_sha256"] == "f" * 64
    assert {"builder image", "Debian archive Release", "bootkiln checkout"} == {
        d["name"] for d in definition["resolvedDependencies"]}
    assert statement["predicate"]["runDetails"]["builder"]["id"]


def test_a_wrong_key_is_refused(signed: AttestedBuild, tmp_path: Path) -> None:
    _, other = generate_key_pair(tmp_path / "other")
    with pytest.raises(InputError, match="signed by another key"):
        verify_folder(signed.out, "default", load_public_key(other))


def test_a_tampered_artifact_is_refused(signed: AttestedBuild, key_pair: tuple[Path, Path]) -> None:
    with (signed.out / "boot.iso").open("r+b") as handle:
        handle.seek(100)
        handle.write(b"X")
    with pytest.raises(InputError, match=r"boot.iso: sha256 .* does not match"):
        verify_folder(signed.out, "default", load_public_key(key_pair[1]))


def _rewrite_statement(folder: Path, change: object) -> None:
    path = folder / "provenance.dsse.json"
    envelope = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    change(statement)  # type: ignore[operator]
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    path.write_text(json.dumps(envelope))


def test_a_tampered_statement_is_refused(signed: AttestedBuild, key_pair: tuple[Path, Path]) -> None:
    (signed.out / "boot.iso").write_bytes(b"a replaced ISO")
    from bootkiln.hashing import sha256_file

    def point_at_the_replacement(statement: dict) -> None:  # type: ignore[type-arg]
        for subject in statement["subject"]:
            if subject["name"] == "boot.iso":
                subject["digest"]["sha256"] = sha256_file(signed.out / "boot.iso")

    _rewrite_statement(signed.out, point_at_the_replacement)
    with pytest.raises(InputError, match="altered after it was signed"):
        verify_folder(signed.out, "default", load_public_key(key_pair[1]))


def test_a_missing_signature_is_refused(signed: AttestedBuild, key_pair: tuple[Path, Path]) -> None:
    path = signed.out / "provenance.dsse.json"
    envelope = json.loads(path.read_text())
    path.write_text(json.dumps({**envelope, "signatures": []}))
    with pytest.raises(InputError, match="no signature"):
        verify_folder(signed.out, "default", load_public_key(key_pair[1]))
    # Replacing the envelope by the bare statement does not help either.
    path.rename(signed.out / "provenance.intoto.json")
    (signed.out / "provenance.intoto.json").write_bytes(base64.b64decode(envelope["payload"]))
    with pytest.raises(InputError, match=r"not signed|no signed"):
        verify_folder(signed.out, "default", load_public_key(key_pair[1]))


def test_an_unsigned_build_is_refused_when_a_key_is_given(tmp_path: Path, key_pair: tuple[Path, Path]) -> None:
    unsigned = make_build_folder(tmp_path / "unsigned", None)
    with pytest.raises(InputError, match="unsigned"):
        verify_folder(unsigned.out, "default", load_public_key(key_pair[1]))
    verified = verify_folder(unsigned.out, "default", None)
    assert not verified.signed


def test_a_statement_for_another_profile_is_refused(tmp_path: Path, key_pair: tuple[Path, Path]) -> None:
    rescue = make_build_folder(tmp_path / "rescue", load_private_key(key_pair[0]), profile_name="rescue")
    with pytest.raises(InputError, match="for profile 'rescue', not 'default'"):
        verify_folder(rescue.out, "default", load_public_key(key_pair[1]))


@pytest.mark.parametrize("tamper", ["manifest", "sums-extra", "sums-digest", "subject-path", "missing-file"])
def test_other_tampering_is_refused(signed: AttestedBuild, key_pair: tuple[Path, Path], tamper: str) -> None:
    out = signed.out
    if tamper == "manifest":
        manifest = json.loads((out / "manifest.json").read_text())
        manifest["profile"]["iso"]["cmdline"] += " init=/bin/sh"
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    elif tamper == "sums-extra":
        (out / "evil.sh").write_text("#!/bin/sh\n")
        with (out / "SHA256SUMS").open("a") as handle:
            handle.write(f"{'0' * 64}  evil.sh\n")
    elif tamper == "sums-digest":
        text = (out / "SHA256SUMS").read_text()
        (out / "SHA256SUMS").write_text(text.replace(signed.listed["vmlinuz"], "1" * 64))
    elif tamper == "subject-path":
        key = load_private_key(next((out.parent / "keys").glob("*.key")))
        from bootkiln.attest import dsse

        envelope = json.loads((out / "provenance.dsse.json").read_text())
        statement = json.loads(base64.b64decode(envelope["payload"]))
        statement["subject"].append({"name": "../../etc/passwd", "digest": {"sha256": "0" * 64}})
        (out / "provenance.dsse.json").write_bytes(dsse.envelope_bytes(dsse.sign(json.dumps(statement).encode(),
                                                                                  key)))
    else:
        (out / "vmlinuz").unlink()
    with pytest.raises(InputError):
        verify_folder(out, "default", load_public_key(key_pair[1]))


def test_rebuild_with_a_key_refuses_unsigned_foreign_or_edited_manifests(
        tmp_path: Path, key_pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """All refused before anything is built (no Docker is reachable here, so a build would fail otherwise)."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.delenv("BOOTKILN_SIGNING_KEY", raising=False)
    unsigned = make_build_folder(tmp_path / "unsigned", None)
    with pytest.raises(InputError, match="unsigned manifest is not trusted"):
        rebuild(unsigned.out / "manifest.json", Reporter(), key_pair[1])
    _, other = generate_key_pair(tmp_path / "other")
    foreign = make_build_folder(tmp_path / "foreign", load_private_key(other.with_name("signing.key")))
    with pytest.raises(InputError, match="signed by another key"):
        rebuild(foreign.out / "manifest.json", Reporter(), key_pair[1])
    signed = make_build_folder(tmp_path / "signed", load_private_key(key_pair[0]))
    manifest = signed.out / "manifest.json"
    assert verify_manifest(manifest, load_public_key(key_pair[1]))["subject"]
    data = json.loads(manifest.read_text())
    data["artifacts"]["boot.iso"] = "0" * 64
    from bootkiln.core.manifest import seal

    manifest.write_text(json.dumps(seal(data), indent=2, sort_keys=True) + "\n")  # re-sealed: the old attack
    with pytest.raises(InputError, match="changed after it was signed"):
        rebuild(manifest, Reporter(), key_pair[1])
    monkeypatch.setenv("BOOTKILN_SIGNING_KEY", str(key_pair[0]))  # the configured key, not a flag
    with pytest.raises(InputError, match="changed after it was signed"):
        rebuild(manifest, Reporter())


def run_task(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("BOOTKILN_HOME", "BOOTKILN_SIGNING_KEY")}
    environment.update({"DOCKER_HOST": "unix:///nonexistent/docker.sock", "NO_COLOR": "1",
                        "BOOTKILN_CACHE": str(tmp_path / "cache"), "BOOTKILN_OUT": str(tmp_path / "out-default"),
                        **(env or {})})
    process = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=environment,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60, check=False)
    return process.returncode, process.stdout


def _key_lines(*paths: Path) -> list[str]:
    return [line for path in paths for line in path.read_text().splitlines() if line and "-----" not in line]


def test_the_task_exits_0_when_all_holds_and_2_with_a_clear_message_otherwise(
        signed: AttestedBuild, key_pair: tuple[Path, Path], tmp_path: Path) -> None:
    private, public = key_pair
    status, output = run_task(["verify-build", "--dir", str(signed.out), "--key", str(public)], tmp_path)
    assert status == 0, output
    assert "signature, every digest and the manifest hold" in output
    status, output = run_task(["verify-build", "--dir", str(signed.out)], tmp_path)
    assert status == 0 and "SIGNATURE WAS NOT CHECKED" in output, output
    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text(private.read_text().replace("PRIVATE", "PUBLIC"))
    (signed.out / "initrd.img").write_bytes(b"tampered")
    _, other = generate_key_pair(tmp_path / "other")
    outputs = []
    for key, expected in ((public, "initrd.img: sha256"), (other, "signed by another key"),
                          (not_a_key, "is not a PEM public key")):
        status, output = run_task(["verify-build", "--dir", str(signed.out), "--key", str(key)], tmp_path)
        assert status == 2 and expected in output and "Traceback" not in output, output
        outputs.append(output)
    status, output = run_task(["verify-build", "--dir", str(signed.out)], tmp_path,
                              env={"BOOTKILN_SIGNING_KEY": str(not_a_key)})
    assert status == 2 and "not-a-key.pem is not a PEM" in output and "Traceback" not in output, output
    outputs.append(output)
    for line in _key_lines(private, not_a_key, other.with_name("signing.key")):
        assert all(line not in output for output in outputs)


def test_an_unsigned_verification_says_nothing_is_signed(tmp_path: Path) -> None:
    unsigned = make_build_folder(tmp_path / "unsigned", None)
    status, output = run_task(["verify-build", "--dir", str(unsigned.out)], tmp_path)
    assert status == 0 and "NOTHING IS SIGNED" in output, output


def test_the_signing_key_task_writes_a_pair_and_prints_no_private_bytes(tmp_path: Path) -> None:
    status, output = run_task(["signing-key", "--output", str(tmp_path / "k"), "--algorithm", "ecdsa-p256"], tmp_path)
    assert status == 0, output
    private = load_private_key(tmp_path / "k" / "signing.key")
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert all(line not in output for line in _key_lines(tmp_path / "k" / "signing.key"))
    status, output = run_task(["signing-key", "--output", str(tmp_path / "k")], tmp_path)
    assert status == 2 and "never overwrites" in output, output
    assert not isinstance(private, ed25519.Ed25519PrivateKey)


def test_publishing_with_a_key_configured_takes_only_a_signed_manifest(
        tmp_path: Path, key_pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from bootkiln.commands.publish import trusted_manifest
    from bootkiln.profile.schema import Profile

    monkeypatch.delenv("BOOTKILN_SIGNING_KEY", raising=False)
    unsigned = make_build_folder(tmp_path / "unsigned", None)
    assert trusted_manifest(Profile(), unsigned.out / "manifest.json", "build-iso", Reporter()).artifacts
    monkeypatch.setenv("BOOTKILN_SIGNING_KEY", str(key_pair[0]))
    with pytest.raises(InputError, match="unsigned manifest is not trusted"):
        trusted_manifest(Profile(), unsigned.out / "manifest.json", "build-iso", Reporter())
    signed = make_build_folder(tmp_path / "signed", load_private_key(key_pair[0]))
    assert trusted_manifest(Profile(), signed.out / "manifest.json", "build-iso", Reporter()).artifacts


def test_a_profile_of_the_same_name_but_other_content_is_refused(signed: AttestedBuild,
                                                                  key_pair: tuple[Path, Path]) -> None:
    from bootkiln.profile.schema import Profile

    public = load_public_key(key_pair[1])
    assert verify_folder(signed.out, "default", public, signed.profile.resolved()).signed
    other = Profile.model_validate({"name": "default", "iso": {"cmdline": "console=ttyS0 init=/bin/sh"}})
    with pytest.raises(InputError, match=r"differs from this one in iso\.cmdline"):
        verify_folder(signed.out, "default", public, other.resolved())


def test_unattested_files_are_named_and_a_foreign_payload_type_is_refused(
        signed: AttestedBuild, key_pair: tuple[Path, Path], tmp_path: Path) -> None:
    from bootkiln.attest import dsse

    (signed.out / "extra.sh").write_text("#!/bin/sh\n")
    public = load_public_key(key_pair[1])
    assert verify_folder(signed.out, "default", public).unattested == ["extra.sh"]
    status, output = run_task(["verify-build", "--dir", str(signed.out), "--key", str(key_pair[1])], tmp_path)
    assert status == 0 and "extra.sh" in output and "not covered" in output, output
    envelope = json.loads((signed.out / "provenance.dsse.json").read_text())
    payload = base64.b64decode(envelope["payload"])
    resigned = dsse.sign(payload, load_private_key(key_pair[0]), payload_type="text/plain")
    (signed.out / "provenance.dsse.json").write_bytes(dsse.envelope_bytes(resigned))
    with pytest.raises(InputError, match="payloadType"):
        verify_folder(signed.out, "default", public)


def test_check_profile_says_whether_builds_are_signed_and_refuses_a_bad_key(tmp_path: Path,
                                                                            key_pair: tuple[Path, Path]) -> None:
    status, output = run_task(["check-profile"], tmp_path)
    assert status == 0 and "builds are NOT signed" in output, output
    status, output = run_task(["check-profile"], tmp_path, env={"BOOTKILN_SIGNING_KEY": str(key_pair[0])})
    assert status == 0 and f"signed by key {keyid(load_public_key(key_pair[1]))}" in output, output
    status, output = run_task(["check-profile"], tmp_path, env={"BOOTKILN_SIGNING_KEY": str(key_pair[1])})
    assert status == 2 and "not a PEM private key" in output, output


def _paths(node: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node[:3]):
            found += _paths(value, (*prefix, index))
    return found


def _replaced(node: object, path: tuple[object, ...], value: object) -> object:
    if not path:
        return value
    copy = json.loads(json.dumps(node))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copy


@pytest.mark.parametrize("document", ["provenance.intoto.json", "manifest.json"])
def test_any_malformed_statement_or_manifest_gives_an_input_error_never_a_crash(tmp_path: Path,
                                                                                document: str) -> None:
    """Every node of the document replaced by a value of another type: refused cleanly or still valid."""
    build = make_build_folder(tmp_path / "out", None)
    path = build.out / document
    original = json.loads(path.read_text())
    paths = [p for p in _paths(original) if "profile" not in p[:4] or len(p) < 5]
    statement_path = build.out / "provenance.intoto.json"
    statement = json.loads(statement_path.read_text())
    for node_path in paths:
        replacements: tuple[object, ...] = ([], {}, None, 7, "x")
        for value in replacements:
            path.write_text(json.dumps(_replaced(original, node_path, value)))
            if document == "manifest.json":  # unsigned: a forger re-points the manifest's digest too
                for subject in statement["subject"]:
                    if subject["name"] == "manifest.json":
                        subject["digest"]["sha256"] = sha256_file(path)
                statement_path.write_text(json.dumps(statement))
            with contextlib.suppress(InputError):  # refused cleanly, or still valid
                verify_folder(build.out, "default", None)
    path.write_text(json.dumps(original, indent=2, sort_keys=True) + "\n")
    if document == "manifest.json":
        for subject in statement["subject"]:
            if subject["name"] == "manifest.json":
                subject["digest"]["sha256"] = sha256_file(path)
        statement_path.write_text(json.dumps(statement))
    verify_folder(build.out, "default", None)


def test_a_profiles_signing_key_is_relative_to_the_profile_and_never_in_its_resolved_form(
        tmp_path: Path, key_pair: tuple[Path, Path]) -> None:
    from bootkiln.attest.records import signing_key
    from bootkiln.profile.loader import load_profile

    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "signed.toml").write_text('[signing]\nkey = "../keys/signing.key"\n')
    status, output = run_task(["check-profile", "--profile", str(folder / "signed.toml")], tmp_path)
    assert status == 0 and f"signed by key {keyid(load_public_key(key_pair[1]))}" in output, output
    assert "signing" not in output.split("builds are signed")[0], "the key's path is not part of the profile shown"
    profile = load_profile(str(folder / "signed.toml"))
    assert "signing" not in profile.resolved()
    key = signing_key(profile)
    assert key is not None and keyid(key.public_key()) == keyid(load_public_key(key_pair[1]))
