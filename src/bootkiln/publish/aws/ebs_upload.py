"""A raw disk image into an EBS snapshot through the EBS direct APIs, block by block.

StartSnapshot, then PutSnapshotBlock for each 512 KiB block that holds data, from a pool of
workers, then CompleteSnapshot with the linear aggregate checksum, then a wait until EBS reports
the snapshot completed. No S3 bucket, no ImportSnapshot, no vmimport role.

- Work grows with the data, not the disk: holes of a sparse image are found with SEEK_DATA and
  never read, and blocks that read as all zeros are not sent. A snapshot block that was never
  written reads as zeros, so the volume is the same. That holds for encrypted snapshots too:
  unwritten blocks are not stored or encrypted at all and read back as zeros. What encryption does
  not hide is which block indexes hold data (ListSnapshotBlocks shows them), so an observer with
  EBS read rights learns the image's layout, not its contents. Skipping zeros would be wrong on top
  of a parent snapshot (the parent's data would show through); bootkiln never uses one.
- Memory is bounded: at most 2 x workers blocks are read and not yet sent; the image is streamed.
- Each block carries its base64 SHA-256; EBS rejects a block whose data does not match it.
- Throttling, 5xx and connection errors are retried with exponential backoff and full jitter;
  any other failure stops the upload, and the snapshot is deleted (or the error says how to).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskProgressColumn, TextColumn
from rich.text import Text

from bootkiln.errors import BootkilnError, EnvironmentProblem, InputError
from bootkiln.publish.aws.retry import Aborted, RetryCounter, RetryPolicy, with_retries
from bootkiln.publish.aws.session import aws_failure, error_code

BLOCK_SIZE = 512 * 1024
ZERO_BLOCK = bytes(BLOCK_SIZE)
GIB = 1 << 30
MIB = 1 << 20


# --- reading the image --------------------------------------------------------------------------
def data_ranges(fd: int, size: int) -> list[tuple[int, int]]:
    """Byte ranges that may hold data; holes of a sparse file are left out without reading them."""
    ranges: list[tuple[int, int]] = []
    offset = 0
    try:
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after offset
                    break
                raise
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            ranges.append((start, end))
            offset = end
    except OSError:
        # Filesystems (or block devices) without SEEK_DATA: read everything, zero checks still apply.
        return [(0, size)] if size else []
    return ranges


def candidate_blocks(ranges: list[tuple[int, int]]) -> Iterator[int]:
    """Indexes of the 512 KiB blocks that touch a data range, in ascending order, each once."""
    last = -1
    for start, end in ranges:
        for index in range(max(start // BLOCK_SIZE, last + 1), (end - 1) // BLOCK_SIZE + 1):
            last = index
            yield index


def count_candidates(ranges: list[tuple[int, int]]) -> int:
    return sum(1 for _ in candidate_blocks(ranges))


def read_block(fd: int, index: int, size: int) -> bytes:
    """One block, zero-padded past the end of the image (EBS blocks are always 512 KiB)."""
    offset = index * BLOCK_SIZE
    want = min(BLOCK_SIZE, size - offset)
    chunks: list[bytes] = []
    got = 0
    while got < want:
        chunk = os.pread(fd, want - got, offset + got)
        if not chunk:
            raise EnvironmentProblem(f"the image shrank while it was read (block {index})",
                                     hint="let the image build finish before publishing it")
        chunks.append(chunk)
        got += len(chunk)
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return data if len(data) == BLOCK_SIZE else data + bytes(BLOCK_SIZE - len(data))


def is_zero(block: bytes) -> bool:
    return block == ZERO_BLOCK


def block_digest(block: bytes) -> bytes:
    return hashlib.sha256(block).digest()


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def image_size(fd: int) -> int:
    return os.lseek(fd, 0, os.SEEK_END)


def volume_size_gib(size: int, requested: int | None) -> int:
    """The snapshot's size in whole GiB: the request, or the image rounded up."""
    needed = max(1, math.ceil(size / GIB))
    if requested is not None and requested < needed:
        raise InputError(f"aws.volume_size = {requested} GiB is smaller than the image ({size:,} bytes needs "
                         f"{needed} GiB)", hint=f"set aws.volume_size to {needed} or more, or leave it unset")
    return requested or needed


# --- progress -----------------------------------------------------------------------------------
class ProgressSink(Protocol):
    def start(self, description: str, total_bytes: int) -> None: ...
    def advance(self, nbytes: int, *, sent: bool) -> None: ...
    def stop(self) -> None: ...


class _SentColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        sent = int(task.fields.get("sent", 0))
        elapsed = task.elapsed or 0.0
        rate = sent / MIB / elapsed if elapsed > 0 else 0.0
        return Text(f"{sent / MIB:,.1f} MiB sent, {rate:,.1f} MiB/s")


class RichProgress:
    """A bar over the blocks that may hold data (holes are not counted), with the bytes sent and their rate."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), _SentColumn(),
                                  console=console, transient=False)
        self._task: Any = None
        self._lock = threading.Lock()
        self._sent = 0

    def start(self, description: str, total_bytes: int) -> None:
        self._progress.start()
        self._task = self._progress.add_task(description, total=max(total_bytes, 1), sent=0)

    def advance(self, nbytes: int, *, sent: bool) -> None:
        with self._lock:
            self._sent += nbytes if sent else 0
            self._progress.update(self._task, advance=nbytes, sent=self._sent)

    def stop(self) -> None:
        self._progress.stop()


# --- the upload ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotRequest:
    description: str
    tags: dict[str, str] = field(default_factory=dict)
    volume_size: int | None = None  # GiB; None: the image rounded up
    encrypted: bool = False
    kms_key_arn: str | None = None
    timeout_minutes: int = 60  # EBS cancels a snapshot left uncompleted this long after its last write


@dataclass
class UploadStats:
    image_bytes: int = 0
    blocks_total: int = 0
    blocks_read: int = 0
    blocks_sent: int = 0
    blocks_zero: int = 0
    retries: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def bytes_sent(self) -> int:
        return self.blocks_sent * BLOCK_SIZE

    @property
    def blocks_skipped(self) -> int:
        return self.blocks_total - self.blocks_sent

    def summary(self) -> str:
        rate = self.bytes_sent / MIB / self.seconds if self.seconds else 0.0
        return (f"{self.blocks_sent:,} of {self.blocks_total:,} blocks sent ({self.bytes_sent / MIB:,.1f} MiB), "
                f"{self.blocks_skipped:,} skipped ({self.blocks_total - self.blocks_read:,} in holes, "
                f"{self.blocks_zero:,} read as zeros), {self.retries} retries, {self.seconds:.1f}s, "
                f"{rate:,.1f} MiB/s")


@dataclass(frozen=True)
class UploadResult:
    snapshot_id: str
    volume_size: int
    stats: UploadStats


class UploadFailed(EnvironmentProblem):
    """The upload stopped; the snapshot was deleted, or the message says how to delete it."""

    def __init__(self, message: str, hint: str, *, snapshot_id: str, cleaned: bool) -> None:
        super().__init__(message, hint)
        self.snapshot_id = snapshot_id
        self.cleaned = cleaned


class SnapshotUploader:
    def __init__(self, ebs: Any, ec2: Any, *, workers: int = 8, policy: RetryPolicy | None = None,
                 progress: ProgressSink | None = None, warn: Callable[[str], None] = lambda _: None,
                 wait_delay: float = 5.0, wait_timeout: float = 3600.0) -> None:
        self.ebs = ebs
        self.ec2 = ec2
        self.workers = workers
        self.policy = policy or RetryPolicy()
        self.progress = progress
        self.warn = warn
        self.wait_delay = wait_delay
        self.wait_timeout = wait_timeout

    def upload(self, image: Path, request: SnapshotRequest) -> UploadResult:
        try:
            fd = os.open(image, os.O_RDONLY)
        except OSError as exc:
            raise InputError(f"cannot read the disk image {image}: {exc.strerror}",
                             hint="build it first (invoke build-disk), or pass --image PATH") from None
        try:
            return self._upload(fd, image, request)
        finally:
            os.close(fd)

    def _upload(self, fd: int, image: Path, request: SnapshotRequest) -> UploadResult:
        size = image_size(fd)
        if size == 0:
            raise InputError(f"the disk image {image} is empty", hint="rebuild it with invoke build-disk")
        volume = volume_size_gib(size, request.volume_size)
        ranges = data_ranges(fd, size)
        stats = UploadStats(image_bytes=size, blocks_total=math.ceil(size / BLOCK_SIZE))
        started = time.monotonic()
        counter = RetryCounter()
        snapshot_id = self._start(request, volume, counter)
        try:
            aggregate = self._send_blocks(fd, size, snapshot_id, ranges, stats, counter)
            with_retries(lambda: self.ebs.complete_snapshot(
                SnapshotId=snapshot_id, ChangedBlocksCount=stats.blocks_sent, Checksum=aggregate,
                ChecksumAlgorithm="SHA256", ChecksumAggregationMethod="LINEAR"), self.policy, counter=counter)
            self._wait_completed(snapshot_id)
        except BaseException as exc:
            failure = self._discard(snapshot_id, image, exc)
            if failure is exc:
                raise
            raise failure from exc
        stats.seconds = time.monotonic() - started
        stats.retries = counter.count
        return UploadResult(snapshot_id, volume, stats)

    def _start(self, request: SnapshotRequest, volume: int, counter: RetryCounter) -> str:
        params: dict[str, Any] = {
            "VolumeSize": volume, "Description": request.description, "Timeout": request.timeout_minutes,
            # The same token on every retry: a StartSnapshot that succeeded but whose answer was lost
            # is not repeated as a second, orphaned snapshot.
            "ClientToken": str(uuid.uuid4()),
            "Tags": [{"Key": key, "Value": value} for key, value in sorted(request.tags.items())],
        }
        if request.encrypted:
            params["Encrypted"] = True
            if request.kms_key_arn:
                params["KmsKeyArn"] = request.kms_key_arn
        try:
            response = with_retries(lambda: self.ebs.start_snapshot(**params), self.policy, counter=counter)
        except Exception as exc:
            raise aws_failure(exc, "starting an EBS snapshot (StartSnapshot)") from exc
        return str(response["SnapshotId"])

    def _send_blocks(self, fd: int, size: int, snapshot_id: str, ranges: list[tuple[int, int]],
                     stats: UploadStats, counter: RetryCounter) -> str:
        """Read in order, send in parallel; return the linear aggregate checksum of the blocks sent."""
        slots = threading.BoundedSemaphore(self.workers * 2)
        abort = threading.Event()
        failures: list[BaseException] = []
        aggregate = hashlib.sha256()
        candidates = count_candidates(ranges)

        def put(index: int, block: bytes, checksum: str) -> None:
            def call() -> Any:
                return self.ebs.put_snapshot_block(SnapshotId=snapshot_id, BlockIndex=index, BlockData=block,
                                                   DataLength=BLOCK_SIZE, Checksum=checksum, ChecksumAlgorithm="SHA256")
            try:
                with_retries(call, self.policy, counter=counter, abort=abort)
            except Aborted:
                return
            except Exception as exc:
                raise aws_failure(exc, f"writing block {index} (PutSnapshotBlock)") from exc
            with stats._lock:
                stats.blocks_sent += 1
            if self.progress:
                self.progress.advance(BLOCK_SIZE, sent=True)

        def done(future: Future[None]) -> None:
            slots.release()
            if not future.cancelled() and (exc := future.exception()) is not None:
                failures.append(exc)
                abort.set()

        if self.progress:
            self.progress.start("EBS upload", candidates * BLOCK_SIZE)
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="ebs-put")
        try:
            for index in candidate_blocks(ranges):
                # A slot first, then the read: blocks in memory never exceed the slots.
                while not slots.acquire(timeout=0.2):
                    if abort.is_set():
                        break
                if abort.is_set():
                    break
                block = read_block(fd, index, size)
                stats.blocks_read += 1
                if is_zero(block):
                    slots.release()
                    stats.blocks_zero += 1
                    if self.progress:
                        self.progress.advance(BLOCK_SIZE, sent=False)
                    continue
                digest = block_digest(block)
                aggregate.update(digest)  # in index order, as the linear method wants
                pool.submit(put, index, block, b64(digest)).add_done_callback(done)
                del block
        except BaseException:
            abort.set()
            raise
        finally:
            # Queued blocks are dropped only when the upload has already failed.
            pool.shutdown(wait=True, cancel_futures=abort.is_set())
            if self.progress:
                self.progress.stop()
        if failures:
            raise failures[0]
        return b64(aggregate.digest())

    def _wait_completed(self, snapshot_id: str) -> None:
        deadline = time.monotonic() + self.wait_timeout
        while True:
            try:
                snapshots = self.ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
            except Exception as exc:
                if error_code(exc) != "InvalidSnapshot.NotFound":
                    raise aws_failure(exc, f"waiting for snapshot {snapshot_id}") from exc
                snapshots = []  # not visible to EC2 yet
            state = snapshots[0]["State"] if snapshots else "pending"
            if state == "completed":
                return
            if state == "error":
                raise EnvironmentProblem(f"EBS could not complete snapshot {snapshot_id}: "
                                         f"{snapshots[0].get('StateMessage', 'no reason given')}")
            if time.monotonic() > deadline:
                raise EnvironmentProblem(f"snapshot {snapshot_id} was still {state} after {self.wait_timeout:.0f}s")
            time.sleep(self.wait_delay)

    def _discard(self, snapshot_id: str, image: Path, exc: BaseException) -> BaseException:
        """Delete the unfinished snapshot; the error to raise says whether that worked."""
        cleaned, note = discard_snapshot(self.ec2, snapshot_id)
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            self.warn(f"upload interrupted: {note}")
            return exc
        cause = exc.message if isinstance(exc, BootkilnError) else f"{type(exc).__name__}: {exc}"
        hint = exc.hint if isinstance(exc, BootkilnError) and exc.hint else "run publish-ami again"
        return UploadFailed(f"uploading {image} failed: {cause}; {note}",
                            hint if cleaned else f"delete the snapshot as shown, then {hint}",
                            snapshot_id=snapshot_id, cleaned=cleaned)


def discard_snapshot(ec2: Any, snapshot_id: str) -> tuple[bool, str]:
    """Delete a snapshot no AMI will use; say what happened, and how to finish the job by hand if needed."""
    command = f"aws ec2 delete-snapshot --region {ec2.meta.region_name} --snapshot-id {snapshot_id}"
    try:
        ec2.delete_snapshot(SnapshotId=snapshot_id)
    except Exception as cleanup:
        return False, (f"snapshot {snapshot_id} could not be deleted ({cleanup}); no AMI was registered. "
                       f"Delete it with: {command} (EBS also cancels an uncompleted snapshot by itself after "
                       "its timeout)")
    return True, f"snapshot {snapshot_id} was deleted; no AMI was registered"
