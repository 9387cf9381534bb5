"""Pure parts of the uploaders: hole and zero detection, block reads, sizes, checksums, retry policy."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError  # type: ignore[import-untyped]

from bootkiln.errors import InputError
from bootkiln.publish.aws.ebs_upload import (
    BLOCK_SIZE,
    GIB,
    b64,
    block_digest,
    candidate_blocks,
    data_ranges,
    is_zero,
    read_block,
    volume_size_gib,
)
from bootkiln.publish.aws.retry import RetryCounter, RetryPolicy, is_retryable, with_retries
from bootkiln.publish.aws.s3_upload import MIN_PART, composite_checksum, part_size_for


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


def test_holes_are_found_without_reading_and_blocks_are_listed_once(tmp_path: Path) -> None:
    path = tmp_path / "sparse.img"
    with path.open("wb") as handle:
        handle.truncate(64 * BLOCK_SIZE)
        for offset in (0, 5 * BLOCK_SIZE + 4096, 6 * BLOCK_SIZE - 10, 40 * BLOCK_SIZE):
            handle.seek(offset)
            handle.write(b"x" * 100)
    fd = os.open(path, os.O_RDONLY)
    try:
        ranges = data_ranges(fd, 64 * BLOCK_SIZE)
        assert list(candidate_blocks(ranges)) == [0, 5, 6, 40], "a write across a block edge touches both blocks"
    finally:
        os.close(fd)
    assert list(candidate_blocks([(0, 10), (20, 30), (BLOCK_SIZE - 1, BLOCK_SIZE + 1)])) == [0, 1]
    assert list(candidate_blocks([])) == []


def test_an_all_hole_file_has_no_data(tmp_path: Path) -> None:
    path = tmp_path / "empty.img"
    with path.open("wb") as handle:
        handle.truncate(8 * BLOCK_SIZE)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert data_ranges(fd, 8 * BLOCK_SIZE) == []
    finally:
        os.close(fd)


def test_the_last_block_is_padded_and_zero_blocks_are_recognised(tmp_path: Path) -> None:
    path = tmp_path / "short.img"
    path.write_bytes(b"\0" * BLOCK_SIZE + b"tail")
    fd = os.open(path, os.O_RDONLY)
    try:
        first, last = read_block(fd, 0, BLOCK_SIZE + 4), read_block(fd, 1, BLOCK_SIZE + 4)
    finally:
        os.close(fd)
    assert is_zero(first) and not is_zero(last)
    assert len(last) == BLOCK_SIZE and last.startswith(b"tail") and last[4:] == bytes(BLOCK_SIZE - 4)
    assert b64(block_digest(last)) == base64.b64encode(hashlib.sha256(last).digest()).decode()


def test_volume_size_is_the_image_rounded_up_to_whole_gib() -> None:
    assert volume_size_gib(1, None) == 1
    assert volume_size_gib(GIB, None) == 1
    assert volume_size_gib(GIB + 1, None) == 2
    assert volume_size_gib(GIB + 1, 8) == 8
    with pytest.raises(InputError, match=r"aws.volume_size = 1 GiB is smaller than the image"):
        volume_size_gib(GIB + 1, 1)


def test_backoff_is_jittered_under_an_exponential_ceiling() -> None:
    policy = RetryPolicy(attempts=5, base=0.5, cap=4.0)
    for attempt, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]):
        draws = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= draw <= ceiling for draw in draws)
        assert max(draws) > ceiling / 2, "full jitter spreads over the whole range"
    assert len({policy.delay(3) for _ in range(20)}) > 1


@pytest.mark.parametrize(("error", "retryable"), [
    (client_error("ThrottlingException"), True),
    (client_error("RequestThrottledException"), True),
    (client_error("InternalServerException", 500), True),
    (client_error("Whatever", 503), True),
    (client_error("SlowDown", 503), True),
    (EndpointConnectionError(endpoint_url="https://ebs"), True),
    (client_error("ValidationException"), False),
    (client_error("AccessDeniedException", 403), False),
    (ValueError("bug"), False),
])
def test_which_errors_are_retried(error: Exception, retryable: bool) -> None:
    assert is_retryable(error) is retryable


def test_with_retries_stops_at_success_or_after_the_attempts() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise client_error("ThrottlingException")
        return "done"

    counter = RetryCounter()
    assert with_retries(flaky, RetryPolicy(attempts=5, base=0.0001), counter=counter) == "done"
    assert (len(calls), counter.count) == (3, 2)

    calls.clear()

    def always() -> str:
        calls.append(1)
        raise client_error("ThrottlingException")

    with pytest.raises(ClientError):
        with_retries(always, RetryPolicy(attempts=4, base=0.0001))
    assert len(calls) == 4

    calls.clear()

    def denied() -> str:
        calls.append(1)
        raise client_error("AccessDeniedException", 403)

    with pytest.raises(ClientError):
        with_retries(denied, RetryPolicy(attempts=4, base=0.0001))
    assert len(calls) == 1


def test_s3_parts_respect_the_minimum_and_the_part_limit() -> None:
    assert part_size_for(100, 1) == MIN_PART
    assert part_size_for(10 * GIB, 16 << 20) == 16 << 20
    huge = 500 * GIB
    assert huge / part_size_for(huge, 16 << 20) <= 10_000
    parts = [b"a" * 10, b"b" * 3]
    expected = hashlib.sha256(hashlib.sha256(parts[0]).digest() + hashlib.sha256(parts[1]).digest()).digest()
    assert composite_checksum([hashlib.sha256(part).digest() for part in parts]) == base64.b64encode(
        expected).decode()
