"""The S3 tier of the stage cache, against a real moto server on loopback.

An entry becomes visible only once its index lands (blobs first), downloads are checked against the
index's sha256s, a corrupt object is reported and replaced by the rebuild's upload, a cut-off upload
leaves nothing visible, concurrent uploads of one key are harmless, and an unreachable bucket is
named before any work.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from bootkiln.attest import cache_signing
from bootkiln.core.cache import StageCache
from bootkiln.core.remote_cache import RemoteCache, RemoteEntryBad, RemoteFailed, remote_url
from bootkiln.errors import EnvironmentProblem, InputError
from tests.aws.conftest import MotoServer
from tests.fixtures import invoke

KEY = "ab" * 32
BUCKET = "bootkiln-cache"


def s3() -> Any:
    return boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def bucket(aws_env: MotoServer) -> str:
    s3().create_bucket(Bucket=BUCKET)
    return f"s3://{BUCKET}/team"


def make_entry(cache: StageCache, payload: bytes = b"\x00kernel bytes" * 5000) -> Path:
    with cache.writer("kernel", KEY, {}) as scratch:
        (scratch / "vmlinuz").write_bytes(payload)
        (scratch / "sub").mkdir()
        (scratch / "sub" / "notes.txt").write_text("modules\n")
        (scratch / "stage.json").write_text('{"sha256": {}}')
    entry = cache.lookup("kernel", KEY)
    assert entry is not None
    return entry


def files_of(entry: Path) -> dict[str, bytes]:
    return {p.relative_to(entry).as_posix(): p.read_bytes() for p in sorted(entry.rglob("*"))
            if p.is_file() and p.name != "entry.json"}


def objects(prefix: str = "team/") -> list[str]:
    listing = s3().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def test_an_uploaded_entry_is_fetched_by_another_machine_byte_for_byte(bucket: str, tmp_path: Path) -> None:
    entry = make_entry(StageCache(tmp_path / "a"))
    RemoteCache(bucket).upload("kernel", KEY, entry)
    other = StageCache(tmp_path / "b")
    fetched = RemoteCache(bucket).fetch("kernel", KEY, other)
    assert fetched is not None and fetched == other.lookup("kernel", KEY)
    assert files_of(fetched) == files_of(entry)
    assert RemoteCache(bucket).fetch("kernel", "cd" * 32, other) is None, "a missing key is a plain miss"


def test_a_cut_off_upload_leaves_no_visible_entry(bucket: str, tmp_path: Path) -> None:
    entry = make_entry(StageCache(tmp_path / "a"))
    remote = RemoteCache(bucket)
    real_upload = remote.client.upload_file
    calls: list[str] = []

    def dies_after_the_first_blob(*args: Any, **kwargs: Any) -> None:
        if calls:
            raise KeyboardInterrupt  # as if the machine died mid-upload
        calls.append(args[2])
        real_upload(*args, **kwargs)

    remote.client.upload_file = dies_after_the_first_blob
    with pytest.raises(KeyboardInterrupt):
        remote.upload("kernel", KEY, entry)
    assert [name for name in objects() if "/blobs/" in name] == calls, "the first blob was uploaded"
    assert not [name for name in objects() if "/entries/" in name], "an index appeared for a cut-off upload"
    other = StageCache(tmp_path / "b")
    assert RemoteCache(bucket).fetch("kernel", KEY, other) is None
    assert other.lookup("kernel", KEY) is None


def test_a_corrupt_blob_is_detected_kept_out_of_the_local_cache_and_replaced_by_the_next_upload(
        bucket: str, tmp_path: Path) -> None:
    entry = make_entry(StageCache(tmp_path / "a"))
    RemoteCache(bucket).upload("kernel", KEY, entry)
    digest = hashlib.sha256((entry / "vmlinuz").read_bytes()).hexdigest()
    s3().put_object(Bucket=BUCKET, Key=f"team/blobs/{digest}", Body=b"bit rot")
    other = StageCache(tmp_path / "b")
    with pytest.raises(RemoteEntryBad, match=f"blobs/{digest} is corrupt: 7 bytes with sha256 .* the index says"):
        RemoteCache(bucket).fetch("kernel", KEY, other)
    assert other.lookup("kernel", KEY) is None
    assert list((other.root / "tmp").iterdir()) == [], "the partial download stayed"
    RemoteCache(bucket).upload("kernel", KEY, entry)  # what the rebuild does after its local commit
    assert files_of(RemoteCache(bucket).fetch("kernel", KEY, other) or Path("/missing")) == files_of(entry)


def test_a_garbled_index_is_reported_not_trusted(bucket: str, tmp_path: Path) -> None:
    s3().put_object(Bucket=BUCKET, Key=f"team/entries/kernel/{KEY}.json", Body=b'{"index": {"files": "x"}}')
    with pytest.raises(RemoteEntryBad, match=f"entries/kernel/{KEY}.json is not a valid bootkiln index"):
        RemoteCache(bucket).fetch("kernel", KEY, StageCache(tmp_path / "b"))


def test_an_index_naming_another_key_or_an_escaping_path_is_refused(bucket: str, tmp_path: Path) -> None:
    entry = make_entry(StageCache(tmp_path / "a"))
    RemoteCache(bucket).upload("kernel", KEY, entry)
    body = s3().get_object(Bucket=BUCKET, Key=f"team/entries/kernel/{KEY}.json")["Body"].read()
    s3().put_object(Bucket=BUCKET, Key=f"team/entries/kernel/{KEY}.json", Body=body.replace(b'"vmlinuz"',
                                                                                           b'"../../vmlinuz"'))
    with pytest.raises(RemoteEntryBad):
        RemoteCache(bucket).fetch("kernel", KEY, StageCache(tmp_path / "b"))


def test_concurrent_uploads_of_one_key_are_harmless(bucket: str, tmp_path: Path) -> None:
    entries = [make_entry(StageCache(tmp_path / name)) for name in ("a", "b", "c", "d")]
    errors: list[BaseException] = []

    def upload(entry: Path) -> None:
        try:
            RemoteCache(bucket).upload("kernel", KEY, entry)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(entry,)) for entry in entries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    fetched = RemoteCache(bucket).fetch("kernel", KEY, StageCache(tmp_path / "e"))
    assert fetched is not None and files_of(fetched) == files_of(entries[0])


def test_signed_indexes_are_verified_and_unsigned_ones_refused_when_required(bucket: str, tmp_path: Path) -> None:
    key, stranger = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    entry = make_entry(StageCache(tmp_path / "a"))

    def reader(private: ed25519.Ed25519PrivateKey, *, required: bool = True) -> RemoteCache:
        return RemoteCache(bucket, verify=cache_signing.verifier(private), require_signed=required)

    RemoteCache(bucket).upload("kernel", KEY, entry)
    with pytest.raises(RemoteEntryBad, match=r"is not signed, and cache\.require_signed is set"):
        reader(key).fetch("kernel", KEY, StageCache(tmp_path / "b"))
    assert reader(key, required=False).fetch("kernel", KEY, StageCache(tmp_path / "c")) is not None
    RemoteCache(bucket, sign=cache_signing.signer(key)).upload("kernel", KEY, entry)
    assert reader(key).fetch("kernel", KEY, StageCache(tmp_path / "d")) is not None
    with pytest.raises(RemoteEntryBad, match="not signed by this build's signing key"):
        reader(stranger).fetch("kernel", KEY, StageCache(tmp_path / "e"))
    # A signed index whose file list was altered afterwards no longer matches its signature.
    name = f"team/entries/kernel/{KEY}.json"
    body = s3().get_object(Bucket=BUCKET, Key=name)["Body"].read()
    s3().put_object(Bucket=BUCKET, Key=name, Body=body.replace(b'"size": 8', b'"size": 9'))
    with pytest.raises(RemoteEntryBad, match="not signed by this build's signing key"):
        reader(key).fetch("kernel", KEY, StageCache(tmp_path / "f"))


def test_a_missing_bucket_or_unreachable_endpoint_is_named(aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    with pytest.raises(EnvironmentProblem, match=r"s3://no-such-bucket/x \(endpoint http://127\.0\.0\.1:\d+\)"):
        RemoteCache("s3://no-such-bucket/x").check()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(EnvironmentProblem, match=r"s3://bucket/x is unreachable at http://127\.0\.0\.1:9"):
        RemoteCache("s3://bucket/x").check()


def test_a_failing_bucket_mid_build_is_a_remote_failure_not_a_crash(aws_env: MotoServer, tmp_path: Path) -> None:
    entry = make_entry(StageCache(tmp_path / "a"))
    with pytest.raises(RemoteFailed, match="uploading kernel ababababab"):
        RemoteCache("s3://bucket-that-is-not-there").upload("kernel", KEY, entry)


def test_an_entry_with_a_symbolic_link_is_not_shared_half(bucket: str, tmp_path: Path) -> None:
    cache = StageCache(tmp_path / "a")
    with cache.writer("kernel", KEY, {}) as scratch:
        (scratch / "vmlinuz").write_bytes(b"kernel")
        (scratch / "link").symlink_to("vmlinuz")
    entry = cache.lookup("kernel", KEY)
    assert entry is not None
    with pytest.raises(RemoteFailed, match=r"symbolic links \(link\)"):
        RemoteCache(bucket).upload("kernel", KEY, entry)
    assert objects() == []


def test_the_environment_overrides_the_profile_and_bad_urls_are_input_errors() -> None:
    assert remote_url("s3://a-bucket/p", {"BOOTKILN_CACHE_REMOTE": "s3://other-bucket"}) == "s3://other-bucket"
    assert remote_url("s3://a-bucket/p", {}) == "s3://a-bucket/p"
    assert remote_url(None, {}) is None
    with pytest.raises(InputError, match="BOOTKILN_CACHE_REMOTE='http://x' is not an S3 URL"):
        remote_url(None, {"BOOTKILN_CACHE_REMOTE": "http://x"})


def test_build_iso_names_an_unreachable_bucket_before_any_work(aws_env: MotoServer, tmp_path: Path) -> None:
    result = invoke(["build-iso"], env={"BOOTKILN_CACHE_REMOTE": "s3://missing-bucket/cache",
                                        "BOOTKILN_CACHE": str(tmp_path / "cache"), "BOOTKILN_OUT": str(tmp_path / "o")})
    assert result.returncode == 3, result.output
    assert "the remote stage cache s3://missing-bucket/cache (endpoint http://127.0.0.1:" in result.output
    assert "▶" not in result.output, "a stage started before the bucket was checked"
    assert "Traceback" not in result.output
