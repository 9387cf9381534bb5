"""Retries for the calls bootkiln repeats by itself: exponential backoff with full jitter.

Full jitter (a uniform draw between zero and the exponential ceiling) spreads a burst of throttled
workers out instead of sending them back in lockstep.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from botocore.exceptions import (  # type: ignore[import-untyped]
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from bootkiln.publish.aws.session import error_code, http_status

T = TypeVar("T")

RETRYABLE_CODES = frozenset({
    "ThrottlingException", "RequestThrottledException", "Throttling", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "SlowDown", "ServiceUnavailable", "ServiceUnavailableException", "InternalError",
    "InternalServerError", "InternalServerException", "RequestTimeout", "RequestTimeoutException",
    # Right after StartSnapshot, EBS can briefly answer that the new snapshot does not exist yet.
    "ResourceNotFoundException",
})
TRANSIENT_ERRORS = (ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError)


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    return error_code(exc) in RETRYABLE_CODES or http_status(exc) >= 500 or http_status(exc) == 429


class Aborted(Exception):
    """Another part of the job failed, so this one stopped retrying."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 10
    base: float = 0.25
    cap: float = 20.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * 2**attempt))  # noqa: S311 - jitter, not secrecy


@dataclass
class RetryCounter:
    count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self) -> None:
        with self._lock:
            self.count += 1


def with_retries(call: Callable[[], T], policy: RetryPolicy, *, counter: RetryCounter | None = None,
                 abort: threading.Event | None = None) -> T:
    """call(), again after a jittered pause while it fails with a retryable error and attempts remain."""
    attempt = 0
    while True:
        if abort is not None and abort.is_set():
            raise Aborted
        try:
            return call()
        except Exception as exc:
            attempt += 1
            if attempt >= policy.attempts or not is_retryable(exc):
                raise
            if counter is not None:
                counter.add()
            pause = policy.delay(attempt - 1)
            if abort is not None:
                abort.wait(pause)  # an abort cuts the pause short
            else:
                time.sleep(pause)
