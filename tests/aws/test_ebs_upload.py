"""The EBS direct-API uploader against moto: blocks read back, checksums sent, faults and cleanup."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bootkiln.profile.aws import AwsSettings
from bootkiln.publish.aws.ebs_upload import BLOCK_SIZE, SnapshotRequest, SnapshotUploader, UploadFailed, UploadResult
from bootkiln.publish.aws.retry import RetryPolicy
from bootkiln.publish.aws.session import AwsContext, connect
from tests.aws.helpers import Faults, Recorder, image_block, patterned, session_with, sparse_image

FAST = RetryPolicy(attempts=6, base=0.001, cap=0.01)
DATA_BLOCKS = (0, 1, 7, 20, 39)
# 40 blocks, the last one partial: it is sent zero-padded to 512 KiB.
IMAGE_SIZE = 40 * BLOCK_SIZE - 100 * 1024


@pytest.fixture
def image(tmp_path: Path) -> Path:
    blocks = {index: patterned(index) for index in DATA_BLOCKS if index != 39}
    blocks[39] = patterned(39, BLOCK_SIZE - 100 * 1024)
    blocks[10] = bytes(BLOCK_SIZE)  # allocated on disk, but all zeros: read, then skipped
    return sparse_image(tmp_path / "disk.img", IMAGE_SIZE, blocks)


def make_context(*hooks: tuple[str, Any]) -> AwsContext:
    return connect(AwsSettings(), session=session_with(*hooks))


def upload(ctx: AwsContext, image: Path, workers: int = 4, policy: RetryPolicy = FAST,
           warn: Any = lambda _: None) -> UploadResult:
    uploader = SnapshotUploader(ctx.client("ebs", attempts=1), ctx.client("ec2"), workers=workers, policy=policy,
                                warn=warn, wait_delay=0.05)
    return uploader.upload(image, SnapshotRequest(description="test", tags={"bootkiln:name": "test"}))


def snapshot_exists(ctx: AwsContext, snapshot_id: str) -> bool:
    found = ctx.client("ec2").describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}])
    return bool(found["Snapshots"])


def test_only_nonzero_blocks_are_written_and_read_back_identical(image: Path) -> None:
    recorder = Recorder()
    ctx = make_context(("before-send.ebs", recorder.hook))
    result = upload(ctx, image)

    ebs = ctx.client("ebs")
    listing = ebs.list_snapshot_blocks(SnapshotId=result.snapshot_id)
    assert sorted(block["BlockIndex"] for block in listing["Blocks"]) == list(DATA_BLOCKS)
    # moto reports BlockSize 512 where EBS says 524288: offsets come from the indexes written, never from it.
    assert listing["BlockSize"] in (512, BLOCK_SIZE)
    for entry in listing["Blocks"]:
        got = ebs.get_snapshot_block(SnapshotId=result.snapshot_id, BlockIndex=entry["BlockIndex"],
                                     BlockToken=entry["BlockToken"])["BlockData"].read()
        assert got == image_block(image, entry["BlockIndex"]), f"block {entry['BlockIndex']} differs"
    assert image_block(image, 39)[-100 * 1024:] == bytes(100 * 1024)

    stats = result.stats
    assert (stats.blocks_total, stats.blocks_sent, stats.blocks_zero) == (40, 5, 1)
    assert stats.blocks_read == 6, "holes must be skipped without reading them"
    assert stats.bytes_sent == 5 * BLOCK_SIZE
    assert result.volume_size == 1
    state = ctx.client("ec2").describe_snapshots(SnapshotIds=[result.snapshot_id])["Snapshots"][0]["State"]
    assert state == "completed"


def test_each_block_carries_its_sha256_and_completion_the_linear_aggregate(image: Path) -> None:
    recorder = Recorder()
    ctx = make_context(("before-send.ebs", recorder.hook))
    result = upload(ctx, image)

    digests = {}
    for sent in recorder.of("PutSnapshotBlock"):
        index = int(sent.url.rsplit("/", 1)[1])
        digest = hashlib.sha256(image_block(image, index)).digest()
        assert sent.headers["x-amz-checksum"] == base64.b64encode(digest).decode()
        assert sent.headers["x-amz-checksum-algorithm"] == "SHA256"
        assert sent.headers["x-amz-data-length"] == str(BLOCK_SIZE)
        assert f"/snapshots/{result.snapshot_id}/blocks/{index}" in sent.url
        digests[index] = digest
    assert sorted(digests) == list(DATA_BLOCKS)

    complete = recorder.only("CompleteSnapshot")
    linear = hashlib.sha256(b"".join(digests[index] for index in sorted(digests))).digest()
    assert complete.headers["x-amz-checksum"] == base64.b64encode(linear).decode()
    assert complete.headers["x-amz-checksum-aggregation-method"] == "LINEAR"
    assert complete.headers["x-amz-changedblockscount"] == "5"

    start = recorder.only("StartSnapshot").json()
    assert start["VolumeSize"] == 1 and start["Timeout"] == 60 and start["ClientToken"]
    assert {"Key": "bootkiln:name", "Value": "test"} in start["Tags"]
    assert "Encrypted" not in start


def test_throttling_is_retried_and_the_upload_completes(image: Path) -> None:
    throttled = Faults(fail=lambda call: call <= 4, status=400, code="ThrottlingException")
    unavailable = Faults(fail=lambda call: call == 1, status=503, code="ServiceUnavailableException")
    busy = Faults(fail=lambda call: call == 1, status=400, code="RequestThrottledException")
    ctx = make_context(("before-send.ebs.PutSnapshotBlock", throttled.hook),
                       ("before-send.ebs.StartSnapshot", unavailable.hook),
                       ("before-send.ebs.CompleteSnapshot", busy.hook))
    result = upload(ctx, image)

    assert (throttled.injected, unavailable.injected, busy.injected) == (4, 1, 1)
    assert throttled.calls == 5 + 4, "each throttled block is sent again"
    assert result.stats.retries == 6  # four blocks, the start and the completion
    listing = ctx.client("ebs").list_snapshot_blocks(SnapshotId=result.snapshot_id)
    assert sorted(block["BlockIndex"] for block in listing["Blocks"]) == list(DATA_BLOCKS)


def test_a_permanent_failure_part_way_deletes_the_snapshot(image: Path) -> None:
    recorder = Recorder()
    broken = Faults(fail=lambda call: call > 2, status=400, code="ValidationException")
    ctx = make_context(("before-send.ebs.PutSnapshotBlock", broken.hook), ("before-send.ebs", recorder.hook))
    with pytest.raises(UploadFailed) as caught:
        upload(ctx, image, workers=1)
    error = caught.value
    assert error.cleaned
    assert "ValidationException" in error.message and "no AMI was registered" in error.message
    assert f"snapshot {error.snapshot_id} was deleted" in error.message
    assert not snapshot_exists(ctx, error.snapshot_id)
    assert recorder.of("CompleteSnapshot") == []
    assert broken.injected == 1, "a non-retryable error is not retried, and the upload stops at once"


def test_retries_give_up_after_the_policy_s_attempts(image: Path) -> None:
    throttled = Faults(fail=lambda call: True, status=400, code="ThrottlingException")
    ctx = make_context(("before-send.ebs.PutSnapshotBlock", throttled.hook))
    with pytest.raises(UploadFailed) as caught:
        upload(ctx, image, workers=1, policy=RetryPolicy(attempts=3, base=0.001, cap=0.001))
    assert throttled.calls == 3
    assert "ThrottlingException" in caught.value.message
    assert not snapshot_exists(ctx, caught.value.snapshot_id)


def test_when_the_snapshot_cannot_be_deleted_the_error_says_how(image: Path) -> None:
    broken = Faults(fail=lambda call: call > 1, status=400, code="ValidationException")
    stuck = Faults(fail=lambda call: True, status=400, code="IncorrectState", protocol="ec2")
    ctx = make_context(("before-send.ebs.PutSnapshotBlock", broken.hook),
                       ("before-send.ec2.DeleteSnapshot", stuck.hook))
    with pytest.raises(UploadFailed) as caught:
        upload(ctx, image, workers=1)
    error = caught.value
    assert not error.cleaned
    assert f"aws ec2 delete-snapshot --region us-east-1 --snapshot-id {error.snapshot_id}" in error.message
    assert "IncorrectState" in error.message
    assert snapshot_exists(ctx, error.snapshot_id)


def test_an_interrupt_still_deletes_the_snapshot(image: Path) -> None:
    def interrupt(request: Any, **_: Any) -> None:
        raise KeyboardInterrupt

    warnings: list[str] = []
    recorder = Recorder()
    ctx = make_context(("before-send.ebs.PutSnapshotBlock", interrupt), ("before-send.ebs.StartSnapshot",
                                                                          recorder.hook))
    with pytest.raises(KeyboardInterrupt):
        upload(ctx, image, workers=2, warn=warnings.append)
    assert len(warnings) == 1 and "was deleted" in warnings[0]
    assert ctx.client("ec2").describe_snapshots(OwnerIds=["self"], Filters=[
        {"Name": "tag:bootkiln:name", "Values": ["test"]}])["Snapshots"] == []


def test_workers_run_in_parallel_but_never_more_than_asked(image: Path) -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    def slow(request: Any, **_: Any) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1

    ctx = make_context(("before-send.ebs.PutSnapshotBlock", slow))
    upload(ctx, image, workers=3)
    assert 2 <= peak <= 3


def test_encryption_is_requested_with_the_key(image: Path) -> None:
    recorder = Recorder()
    ctx = make_context(("before-send.ebs.StartSnapshot", recorder.hook))
    uploader = SnapshotUploader(ctx.client("ebs", attempts=1), ctx.client("ec2"), policy=FAST, wait_delay=0.05)
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    uploader.upload(image, SnapshotRequest(description="enc", encrypted=True, kms_key_arn=key, volume_size=2))
    sent = recorder.only("StartSnapshot").json()
    assert (sent["Encrypted"], sent["KmsKeyArn"], sent["VolumeSize"]) == (True, key, 2)
