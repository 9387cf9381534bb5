"""The shared tier of the stage cache: entries in an S3 bucket, so machines reuse each other's stages.

Layout under `s3://bucket/prefix/`:

    blobs/<sha256>               every file of every entry, named by its content
    entries/<stage>/<key>.json   the index of one entry: its files' names, sizes and sha256s

An upload puts the blobs first and the index last; an index names only blobs that were complete
before it was written (an S3 PUT, multipart or not, shows nothing until it completes). So an upload
cut off midway leaves no visible entry, and two machines uploading one key at once write the same
names with the same content: whichever index lands last is as good as the other.

A download checks every blob against the index's sha256 while it streams into a local scratch
folder, which becomes the local entry only when every file matched (StageCache.writer). A mismatch
or an unreadable index is reported and treated as a miss: the stage is rebuilt, and its upload
replaces the bad objects.

Indexes may be signed (a DSSE envelope made with the build's signing key, see bootkiln.attest); with
`require_signed`, an unsigned or wrongly signed index is refused the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootkiln.core.cache import ENTRY_FILE, StageCache
from bootkiln.errors import EnvironmentProblem, InputError

REMOTE_VARIABLE = "BOOTKILN_CACHE_REMOTE"
INDEX_FORMAT = 1
_URL = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/(?P<prefix>[A-Za-z0-9._/-]*))?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20

Sign = Callable[[bytes], dict[str, Any]]
Verify = Callable[[bytes, dict[str, Any]], bool]


class RemoteEntryBad(Exception):
    """A remote entry that must not be used: corrupt, incomplete or not trusted. The message says which."""


class RemoteFailed(Exception):
    """The bucket failed mid-build (network, permissions): the build goes on with its local cache."""


@contextmanager
def _translated(doing: str) -> Iterator[None]:
    from boto3.exceptions import Boto3Error  # type: ignore[import-untyped]
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

    try:
        yield
    except (BotoCoreError, ClientError, Boto3Error) as exc:
        raise RemoteFailed(f"{doing}: {exc}") from exc


def remote_url(profile_value: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The remote cache's URL: BOOTKILN_CACHE_REMOTE, else the profile's cache.remote; None for none."""
    environ = dict(os.environ) if environ is None else environ
    value = environ.get(REMOTE_VARIABLE, "").strip() or profile_value
    if value and not _URL.match(value):
        raise InputError(f"{REMOTE_VARIABLE}={value!r} is not an S3 URL like s3://bucket/prefix",
                         hint=f"set {REMOTE_VARIABLE} to s3://<bucket>[/<prefix>], or unset it")
    return value or None


@dataclass
class RemoteCache:
    url: str
    sign: Sign | None = None
    verify: Verify | None = None
    require_signed: bool = False
    client: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        match = _URL.match(self.url)
        if match is None:
            raise InputError(f"{self.url!r} is not an S3 URL like s3://bucket/prefix")
        self.bucket = match["bucket"]
        self.prefix = (match["prefix"] or "").strip("/")
        if self.client is None:
            self.client = _s3_client()
        self.endpoint = str(self.client.meta.endpoint_url)

    # --- names ------------------------------------------------------------------------------
    def _name(self, *parts: str) -> str:
        return "/".join(part for part in (self.prefix, *parts) if part)

    def index_name(self, stage: str, key: str) -> str:
        return self._name("entries", stage, f"{key}.json")

    def blob_name(self, digest: str) -> str:
        return self._name("blobs", digest)

    def where(self, name: str = "") -> str:
        return f"s3://{self.bucket}/{name}"

    # --- checks -----------------------------------------------------------------------------
    def check(self) -> None:
        """Reach the bucket before any work, so a wrong address or credential is named at once."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise EnvironmentProblem(
                f"the remote stage cache {self.url} (endpoint {self.endpoint}) cannot be used: {code or exc}",
                hint="create the bucket, or fix cache.remote / BOOTKILN_CACHE_REMOTE and the credentials "
                     "(boto3's standard chain)") from None
        except BotoCoreError as exc:
            raise EnvironmentProblem(
                f"the remote stage cache {self.url} is unreachable at {self.endpoint}: {exc}",
                hint="check AWS_ENDPOINT_URL and the network, or unset BOOTKILN_CACHE_REMOTE / cache.remote "
                     "to build with this machine's cache only") from None

    # --- download ---------------------------------------------------------------------------
    def index(self, stage: str, key: str) -> dict[str, Any] | None:
        """The entry's checked index, None if there is none; RemoteEntryBad if it is unusable."""
        from botocore.exceptions import ClientError

        name = self.index_name(stage, key)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") in ("NoSuchKey", "404"):
                return None
            raise
        try:
            document = json.loads(body)
            payload = json.dumps(document["index"], sort_keys=True).encode()
            index: dict[str, Any] = document["index"]
            files = index["files"]
            valid = (index.get("format") == INDEX_FORMAT and index.get("stage") == stage and index.get("key") == key
                     and isinstance(files, dict) and all(
                         isinstance(f, dict) and _SHA256.match(str(f.get("sha256"))) and isinstance(f.get("size"), int)
                         and _safe_name(n) for n, f in files.items()))
        except (ValueError, KeyError, TypeError, AttributeError):
            valid = False
        if not valid:
            raise RemoteEntryBad(f"the index {self.where(name)} is not a valid bootkiln index")
        signature = document.get("signature")
        if self.require_signed or signature is not None:
            if signature is None:
                raise RemoteEntryBad(f"the index {self.where(name)} is not signed, and cache.require_signed is set")
            if self.verify is None or not self.verify(payload, signature):
                raise RemoteEntryBad(f"the index {self.where(name)} is not signed by this build's signing key")
        return index

    def fetch(self, stage: str, key: str, cache: StageCache) -> Path | None:
        """Download the entry into the local cache (call under cache.lock); its path, or None on a miss.

        RemoteEntryBad if the remote entry exists but is corrupt or untrusted: nothing is kept locally.
        """
        with _translated(f"downloading {stage} {key[:12]} from {self.url}"):
            index = self.index(stage, key)
            if index is None:
                return None
            with cache.writer(stage, key, {"remote": self.url}) as scratch:
                for name, expected in sorted(index["files"].items()):
                    self._download(expected["sha256"], expected["size"], scratch / name)
        entry = cache.lookup(stage, key)
        assert entry is not None, "the downloaded entry vanished right after it was written"
        return entry

    def _download(self, digest: str, size: int, destination: Path) -> None:
        from botocore.exceptions import ClientError

        name = self.blob_name(digest)
        destination.parent.mkdir(parents=True, exist_ok=True)
        hasher, written = hashlib.sha256(), 0
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]
            with destination.open("xb") as sink:
                for chunk in body.iter_chunks(_CHUNK):
                    hasher.update(chunk)
                    written += len(chunk)
                    sink.write(chunk)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") in ("NoSuchKey", "404"):
                raise RemoteEntryBad(f"{self.where(name)}, named by an index, is missing") from None
            raise
        if hasher.hexdigest() != digest or written != size:
            raise RemoteEntryBad(f"{self.where(name)} is corrupt: {written} bytes with sha256 {hasher.hexdigest()}, "
                                 f"the index says {size} bytes with sha256 {digest}")

    # --- upload -----------------------------------------------------------------------------
    def upload(self, stage: str, key: str, entry: Path) -> None:
        """Publish a complete local entry: every file as a blob, then the index that makes it visible."""
        with _translated(f"uploading {stage} {key[:12]} to {self.url}"):
            self._upload(stage, key, entry)

    def _upload(self, stage: str, key: str, entry: Path) -> None:
        links = [path.relative_to(entry).as_posix() for path in entry.rglob("*") if path.is_symlink()]
        if links:  # an entry must arrive whole or not at all; blobs carry file contents only
            raise RemoteFailed(f"the {stage} entry holds symbolic links ({', '.join(links)}), which the remote "
                               "cache does not carry; it is kept on this machine only")
        files: dict[str, dict[str, Any]] = {}
        for path in _entry_files(entry):
            digest = _sha256(path)
            files[path.relative_to(entry).as_posix()] = {"sha256": digest, "size": path.stat().st_size}
            # Always put: a blob found corrupt is replaced by the rebuild's upload; equal content is harmless.
            self.client.upload_file(str(path), self.bucket, self.blob_name(digest))
        index = {"format": INDEX_FORMAT, "stage": stage, "key": key, "files": files}
        document: dict[str, Any] = {"index": index}
        if self.sign is not None:
            document["signature"] = self.sign(json.dumps(index, sort_keys=True).encode())
        self.client.put_object(Bucket=self.bucket, Key=self.index_name(stage, key),
                               Body=json.dumps(document, sort_keys=True, indent=1).encode(),
                               ContentType="application/json")


def _s3_client() -> Any:
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]

    # boto3's standard chain gives credentials and region; AWS_ENDPOINT_URL, the endpoint (moto, MinIO, Ceph).
    session = boto3.Session()
    config = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5, read_timeout=60,
                    s3={"addressing_style": "path"})
    return session.client("s3", region_name=session.region_name or "us-east-1", config=config)


def _entry_files(entry: Path) -> Iterator[Path]:
    # entry.json is local bookkeeping (when this machine made the entry); the rest is the stage's result.
    for path in sorted(entry.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.relative_to(entry).as_posix() != ENTRY_FILE:
            yield path


def _safe_name(name: str) -> bool:
    parts = name.split("/")
    return bool(name) and name != ENTRY_FILE and all(part not in ("", ".", "..") for part in parts)


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as source:
        for chunk in iter(lambda: source.read(_CHUNK), b""):
            hasher.update(chunk)
    return hasher.hexdigest()
