"""`upload-iso` against moto: multipart with a SHA-256 per part, metadata, idempotence, aborts."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest

from bootkiln.commands import publish as cli_actions
from bootkiln.core.manifest import seal
from bootkiln.hashing import sha256_file
from tests.aws.helpers import Faults, Recorder, manifest_seal, session_with, write_manifest

BUCKET = "bootkiln-isos"
MIB = 1 << 20


def s3() -> Any:
    return boto3.Session().client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])


@pytest.fixture
def iso_build(tmp_path: Path) -> tuple[str, Path, Path]:
    """A profile with an S3 bucket, a 12 MiB 'ISO' and its manifest; returns (profile, iso, manifest)."""
    profile = tmp_path / "isos.toml"
    profile.write_text(f'[aws]\ns3_bucket = "{BUCKET}"\ns3_prefix = "images/"\nworkers = 2\n')
    out = Path(os.environ["BOOTKILN_OUT"]) / "isos"
    out.mkdir(parents=True)
    iso = out / "boot.iso"
    iso.write_bytes(os.urandom(12 * MIB + 4321))
    manifest = write_manifest(out / "manifest.json", {"boot.iso": sha256_file(iso)})
    s3().create_bucket(Bucket=BUCKET)
    return str(profile), iso, manifest


def upload(profile: str, *hooks: tuple[str, Any]) -> int:
    return cli_actions.upload_iso(profile, session=session_with(*hooks), part_size=5 * MIB)


def test_multipart_upload_with_part_checksums_and_manifest_metadata(iso_build: tuple[str, Path, Path]) -> None:
    profile, iso, manifest = iso_build
    recorder = Recorder()
    assert upload(profile, ("before-send.s3", recorder.hook)) == 0

    manifest_sha = manifest_seal(manifest)
    key = f"images/isos/{manifest_sha[:16]}/boot.iso"
    data = iso.read_bytes()
    parts = [data[offset:offset + 5 * MIB] for offset in range(0, len(data), 5 * MIB)]
    sent = recorder.of("UploadPart")
    assert len(sent) == 3
    for request in sent:
        number = int(request.url.split("partNumber=")[1].split("&")[0])
        expected = base64.b64encode(hashlib.sha256(parts[number - 1]).digest()).decode()
        assert request.headers["x-amz-checksum-sha256"] == expected
    assert recorder.only("CreateMultipartUpload").headers["x-amz-checksum-algorithm"] == "SHA256"

    head = s3().head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    composite = base64.b64encode(hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest())
    assert head["ChecksumSHA256"].split("-")[0] == composite.decode()
    assert head["Metadata"] == {"bootkiln-profile": "isos", "sha256": sha256_file(iso),
                                "manifest-sha256": manifest_sha,
                                "manifest-key": f"images/isos/{manifest_sha[:16]}/manifest.json"}
    assert s3().get_object(Bucket=BUCKET, Key=key)["Body"].read() == data
    stored = s3().get_object(Bucket=BUCKET, Key=f"images/isos/{manifest_sha[:16]}/manifest.json")
    assert stored["Body"].read() == manifest.read_bytes()

    again = Recorder()
    assert upload(profile, ("before-send.s3", again.hook)) == 0
    assert again.of("CreateMultipartUpload") == [], "the same build is not uploaded twice"


def test_a_failed_part_aborts_the_upload(iso_build: tuple[str, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    profile, _, _ = iso_build
    denied = Faults(fail=lambda call: call == 2, status=403, code="AccessDenied", protocol="s3")
    recorder = Recorder()
    assert upload(profile, ("before-send.s3.UploadPart", denied.hook), ("before-send.s3", recorder.hook)) == 3
    assert "AccessDenied" in capsys.readouterr().out
    assert len(recorder.of("AbortMultipartUpload")) == 1
    assert s3().list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert s3().list_objects_v2(Bucket=BUCKET, Prefix="images/isos/").get("KeyCount") == 1  # the manifest only


def test_bucket_missing_from_profile_or_from_s3(iso_build: tuple[str, Path, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bare = tmp_path / "isos-bare.toml"
    bare.write_text("[aws]\n")
    assert cli_actions.upload_iso(str(bare)) == 2
    assert "key 'aws.s3_bucket' is not set" in capsys.readouterr().out

    profile, _, _ = iso_build
    Path(profile).write_text('[aws]\ns3_bucket = "no-such-bucket"\n')
    assert upload(profile) == 2
    assert "S3 bucket no-such-bucket does not exist" in capsys.readouterr().out


RECORDS = {"sbom.spdx.json": b'{"spdxVersion": "SPDX-2.3"}\n', "sbom.cdx.json": b'{"bomFormat": "CycloneDX"}\n',
           "provenance.dsse.json": b'{"payloadType": "application/vnd.in-toto+json"}\n'}


def _attested_manifest(iso: Path, manifest: Path) -> None:
    """Rewrite the fixture's build as one with SBOMs and a provenance file, as Build.publish writes them."""
    out = iso.parent
    for name, data in RECORDS.items():
        (out / name).write_bytes(data)
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in RECORDS.items()}
    data = json.loads(manifest.read_text())
    data["attestations"] = {"sboms": {n: digests[n] for n in ("sbom.spdx.json", "sbom.cdx.json")},
                            "provenance": "provenance.dsse.json", "signed": True, "keyid": "0" * 64}
    manifest.unlink()
    manifest.write_text(json.dumps(seal(data), indent=2, sort_keys=True) + "\n")
    listed = {"boot.iso": sha256_file(iso), **digests}
    (out / "SHA256SUMS").write_text("".join(f"{listed[n]}  {n}\n" for n in sorted(listed)))


def test_the_sboms_and_provenance_go_beside_the_iso(iso_build: tuple[str, Path, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    profile, iso, manifest = iso_build
    _attested_manifest(iso, manifest)
    recorder = Recorder()
    assert upload(profile, ("before-send.s3", recorder.hook)) == 0
    folder = f"images/isos/{manifest_seal(manifest)[:16]}/"
    checksums = {request.url.split("?")[0].rsplit("/", 1)[-1]: request.headers["x-amz-checksum-sha256"]
                 for request in recorder.of("PutObject")}
    for name, data in RECORDS.items():
        assert s3().get_object(Bucket=BUCKET, Key=folder + name)["Body"].read() == data, name
        head = s3().head_object(Bucket=BUCKET, Key=folder + name)
        assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert checksums[name] == base64.b64encode(hashlib.sha256(data).digest()).decode(), "S3 checks the bytes"
    keys = {item["Key"] for item in s3().list_objects_v2(Bucket=BUCKET, Prefix=folder)["Contents"]}
    assert keys == {folder + name for name in (*RECORDS, "boot.iso", "manifest.json")}
    assert f"s3://{BUCKET}/{folder}sbom.spdx.json" in capsys.readouterr().out

    again = Recorder()
    assert upload(profile, ("before-send.s3", again.hook)) == 0
    assert again.of("PutObject") == [] and again.of("CreateMultipartUpload") == [], "nothing is sent twice"


def test_records_reach_an_iso_uploaded_before_them(iso_build: tuple[str, Path, Path]) -> None:
    """An ISO already in S3 (an upload by a version without records) gets its SBOMs and provenance added."""
    profile, iso, manifest = iso_build
    _attested_manifest(iso, manifest)
    folder = f"images/isos/{manifest_seal(manifest)[:16]}/"
    s3().put_object(Bucket=BUCKET, Key=folder + "boot.iso", Body=b"x", Metadata={"sha256": sha256_file(iso)})
    recorder = Recorder()
    assert upload(profile, ("before-send.s3", recorder.hook)) == 0
    assert recorder.of("CreateMultipartUpload") == []
    assert len(recorder.of("PutObject")) == len(RECORDS)


@pytest.mark.parametrize("damage", ["changed", "missing"])
def test_a_changed_or_missing_record_is_refused_before_anything_is_uploaded(
        iso_build: tuple[str, Path, Path], damage: str, capsys: pytest.CaptureFixture[str]) -> None:
    profile, iso, manifest = iso_build
    _attested_manifest(iso, manifest)
    (iso.parent / "sbom.cdx.json").unlink()
    if damage == "changed":
        (iso.parent / "sbom.cdx.json").write_bytes(b'{"edited": true}\n')
    assert upload(profile) == 2
    output = capsys.readouterr().out
    assert "sbom.cdx.json" in output and ("does not match" if damage == "changed" else "is missing") in output
    assert s3().list_objects_v2(Bucket=BUCKET, Prefix="images/").get("KeyCount") == 0


def test_a_provenance_that_differs_from_sha256sums_is_refused(iso_build: tuple[str, Path, Path],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    profile, iso, manifest = iso_build
    _attested_manifest(iso, manifest)
    (iso.parent / "provenance.dsse.json").unlink()
    (iso.parent / "provenance.dsse.json").write_bytes(b'{"payloadType": "forged"}\n')
    assert upload(profile) == 2
    assert "provenance.dsse.json does not match" in capsys.readouterr().out


def test_a_record_name_that_leaves_the_folder_is_refused(iso_build: tuple[str, Path, Path],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    profile, _, manifest = iso_build
    data = json.loads(manifest.read_text())
    data["attestations"] = {"sboms": {"../../secret": "0" * 64}, "provenance": "provenance.dsse.json"}
    manifest.unlink()
    manifest.write_text(json.dumps(seal(data), indent=2, sort_keys=True) + "\n")
    assert upload(profile) == 2
    assert "'attestations' table is not what a build writes" in capsys.readouterr().out
