"""The ISO to S3 as a multipart upload, every part checked by S3 against its SHA-256.

Objects go to `s3://<bucket>/<prefix><profile>/<manifest sha256[:16]>/`: boot.iso and the build's
manifest.json beside it, with the build's SBOMs and provenance file (bootkiln.attest, each checked
against the manifest or SHA256SUMS first), so a build is uploaded once and never overwrites another.
S3 user metadata is limited to 2 KB, less than a manifest, so the ISO's metadata carries the manifest's sha256 and
key, the ISO's own sha256 and the profile; the manifest itself is the object next to it.

After CompleteMultipartUpload the composite checksum S3 reports (SHA-256 of the parts' SHA-256s)
is compared with the one computed here. A failed upload is aborted, so no parts are left billed.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootkiln.errors import EnvironmentProblem, InputError
from bootkiln.publish.aws.ebs_upload import ProgressSink
from bootkiln.publish.aws.session import AwsContext, aws_failure, error_code, translated

MIB = 1 << 20
MIN_PART = 5 * MIB  # S3's floor for every part but the last
MAX_PARTS = 10_000


@dataclass(frozen=True)
class S3Target:
    bucket: str
    prefix: str
    profile: str
    manifest_sha256: str

    @property
    def folder(self) -> str:
        return f"{self.prefix}{self.profile}/{self.manifest_sha256[:16]}/"

    def key(self, name: str) -> str:
        return self.folder + name


@dataclass(frozen=True)
class S3Result:
    bucket: str
    iso_key: str
    manifest_key: str
    size: int
    parts: int
    checksum: str
    seconds: float
    reused: bool
    record_keys: tuple[str, ...] = ()  # the SBOMs and provenance uploaded (or found) beside the ISO

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.iso_key}"


def part_size_for(size: int, wanted: int) -> int:
    """The wanted part size, raised to S3's minimum and until the file fits in 10,000 parts."""
    part = max(wanted, MIN_PART)
    return max(part, math.ceil(size / MAX_PARTS / MIB) * MIB)


def composite_checksum(digests: list[bytes]) -> str:
    """S3's checksum of a multipart object: SHA-256 over the parts' raw SHA-256s, base64."""
    return base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode("ascii")


class IsoUploader:
    def __init__(self, ctx: AwsContext, *, workers: int = 4, part_size: int = 16 * MIB,
                 progress: ProgressSink | None = None) -> None:
        self.s3 = ctx.client("s3", pool=workers + 4)
        self.workers = workers
        self.part_size = part_size
        self.progress = progress

    def upload(self, iso: Path, manifest: Path, target: S3Target, *, iso_sha256: str, profile: str,
               records: Mapping[str, tuple[Path, str]] | None = None) -> S3Result:
        """records: the build's SBOMs and provenance, name -> (path, checked sha256), put beside the ISO."""
        started = time.monotonic()
        size = iso.stat().st_size
        part = part_size_for(size, self.part_size)
        metadata = {"bootkiln-profile": profile, "sha256": iso_sha256, "manifest-sha256": target.manifest_sha256,
                    "manifest-key": target.key("manifest.json")}
        self._check_bucket(target.bucket)
        # The records go first, and also beside an ISO already uploaded (perhaps by a version without them).
        record_keys = tuple(self._put_record(path, target, name, digest, profile)
                            for name, (path, digest) in sorted((records or {}).items()))
        existing = self._existing(target.bucket, target.key("boot.iso"))
        if existing is not None and existing.get("Metadata", {}).get("sha256") == iso_sha256:
            return S3Result(target.bucket, target.key("boot.iso"), target.key("manifest.json"), size,
                            math.ceil(size / part), str(existing.get("ChecksumSHA256", "")), 0.0, reused=True,
                            record_keys=record_keys)
        with translated(f"uploading {manifest} to s3://{target.bucket}/{target.key('manifest.json')}"):
            body = manifest.read_bytes()
            self.s3.put_object(Bucket=target.bucket, Key=target.key("manifest.json"), Body=body,
                               ContentType="application/json", Metadata=metadata,
                               ChecksumSHA256=base64.b64encode(hashlib.sha256(body).digest()).decode())
        checksum, parts = self._multipart(iso, size, part, target.bucket, target.key("boot.iso"), metadata)
        return S3Result(target.bucket, target.key("boot.iso"), target.key("manifest.json"), size, parts, checksum,
                        time.monotonic() - started, reused=False, record_keys=record_keys)

    def _put_record(self, path: Path, target: S3Target, name: str, digest: str, profile: str) -> str:
        """One SBOM or provenance file, with S3 checking its SHA-256; one already there is left alone."""
        key = target.key(name)
        existing = self._existing(target.bucket, key)
        if existing is not None and existing.get("Metadata", {}).get("sha256") == digest:
            return key
        with translated(f"uploading {path} to s3://{target.bucket}/{key}"):
            body = path.read_bytes()
            if hashlib.sha256(body).hexdigest() != digest:
                raise InputError(f"{path} changed while it was being published",
                                 hint="publish again once no build writes to its folder")
            self.s3.put_object(Bucket=target.bucket, Key=key, Body=body, ContentType="application/json",
                               Metadata={"bootkiln-profile": profile, "sha256": digest,
                                         "manifest-sha256": target.manifest_sha256},
                               ChecksumSHA256=base64.b64encode(hashlib.sha256(body).digest()).decode())
        return key

    def _check_bucket(self, bucket: str) -> None:
        try:
            self.s3.head_bucket(Bucket=bucket)
        except Exception as exc:
            if error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
                raise InputError(f"S3 bucket {bucket} does not exist",
                                 hint="create it, or fix aws.s3_bucket in the profile") from None
            raise aws_failure(exc, f"checking S3 bucket {bucket}",
                              hint="a 403 means the bucket belongs to another account or the credentials lack "
                                   "s3:ListBucket") from exc

    def _existing(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        except Exception as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise aws_failure(exc, f"looking for s3://{bucket}/{key}") from exc
        return head

    def _multipart(self, iso: Path, size: int, part_size: int, bucket: str, key: str,
                   metadata: dict[str, str]) -> tuple[str, int]:
        with translated(f"starting the multipart upload of s3://{bucket}/{key}"):
            upload_id = self.s3.create_multipart_upload(
                Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256", Metadata=metadata,
                ContentType="application/x-iso9660-image")["UploadId"]
        count = max(1, math.ceil(size / part_size))
        digests: list[bytes] = [b""] * count
        etags: list[str] = [""] * count
        try:
            self._send_parts(iso, size, part_size, bucket, key, upload_id, digests, etags)
            expected = composite_checksum(digests)
            parts = [{"PartNumber": n + 1, "ETag": etags[n], "ChecksumSHA256": base64.b64encode(digests[n]).decode()}
                     for n in range(count)]
            with translated(f"completing the multipart upload of s3://{bucket}/{key}"):
                done = self.s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                                         MultipartUpload={"Parts": parts})
        except BaseException as exc:
            note = self._abort(bucket, key, upload_id)
            if note is None or not isinstance(exc, Exception):
                raise
            failure = aws_failure(exc, f"uploading s3://{bucket}/{key}")
            raise EnvironmentProblem(f"{failure.message}; {note}", failure.hint) from exc
        reported = str(done.get("ChecksumSHA256", ""))
        if not reported:  # not every S3 implementation answers with it; the stored object has it
            with translated(f"reading the checksum of s3://{bucket}/{key}"):
                reported = str(self.s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
                               .get("ChecksumSHA256", ""))
        # S3 writes a multipart checksum as "<base64>-<number of parts>".
        reported = reported.split("-")[0]
        if reported != expected:
            raise EnvironmentProblem(f"s3://{bucket}/{key}: S3 reports checksum {reported or 'none'}, but the "
                                     f"parts sent give {expected}",
                                     hint=f"upload again; delete the object first (aws s3 rm s3://{bucket}/{key})")
        return expected, count

    def _send_parts(self, iso: Path, size: int, part_size: int, bucket: str, key: str, upload_id: str,
                    digests: list[bytes], etags: list[str]) -> None:
        """Parts are read in order and sent in parallel; at most 2 x workers are in memory at once."""
        slots = threading.BoundedSemaphore(self.workers * 2)
        failures: list[BaseException] = []

        def put(number: int, data: bytes) -> None:
            digest = hashlib.sha256(data).digest()
            with translated(f"uploading part {number + 1} of s3://{bucket}/{key}"):
                response = self.s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number + 1,
                                               Body=data, ChecksumSHA256=base64.b64encode(digest).decode())
            digests[number] = digest
            etags[number] = str(response["ETag"])
            if self.progress:
                self.progress.advance(len(data), sent=True)

        def done(future: Future[None]) -> None:
            slots.release()
            if not future.cancelled() and (exc := future.exception()) is not None:
                failures.append(exc)

        if self.progress:
            self.progress.start("S3 upload", size)
        fd = os.open(iso, os.O_RDONLY)
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="s3-part")
        try:
            for number in range(max(1, math.ceil(size / part_size))):
                slots.acquire()
                if failures:
                    break
                data = os.pread(fd, part_size, number * part_size)
                pool.submit(put, number, data).add_done_callback(done)
                del data
        except BaseException:
            failures.append(InputError("interrupted"))
            raise
        finally:
            # Queued parts are dropped only when the upload has already failed.
            pool.shutdown(wait=True, cancel_futures=bool(failures))
            os.close(fd)
            if self.progress:
                self.progress.stop()
        if failures:
            raise failures[0]

    def _abort(self, bucket: str, key: str, upload_id: str) -> str | None:
        """Abort the upload so no parts stay stored (and billed); None if that worked, else what to run."""
        try:
            self.s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception as exc:
            return (f"the multipart upload could not be aborted ({exc}); abort it with: aws s3api "
                    f"abort-multipart-upload --bucket {bucket} --key {key} --upload-id {upload_id}")
        return None
