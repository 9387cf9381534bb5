"""What the AWS tests share: sparse test images, a recorder of what botocore SENT, fault injection.

moto drops some request parameters (register_image keeps neither the block device mapping nor ENA,
boot mode or ImdsSupport), so tests assert on the wire request captured by a 'before-send' hook.
Faults are injected the same way: a 'before-send' handler that returns a response stops botocore
from sending the request and hands that response to the parser, as if AWS had answered it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import boto3  # type: ignore[import-untyped]
from botocore.awsrequest import AWSResponse  # type: ignore[import-untyped]

from bootkiln import __version__
from bootkiln.core.manifest import FORMAT, SEAL, seal
from bootkiln.publish.aws.ebs_upload import BLOCK_SIZE

Hook = Callable[..., Any]


def sparse_image(path: Path, size: int, blocks: dict[int, bytes]) -> Path:
    """A sparse file of `size` bytes with `blocks[index]` written at index * 512 KiB."""
    with path.open("wb") as handle:
        handle.truncate(size)
        for index, data in blocks.items():
            handle.seek(index * BLOCK_SIZE)
            handle.write(data)
    return path


def patterned(index: int, length: int = BLOCK_SIZE) -> bytes:
    """Data that differs per block, so a block written at the wrong index is caught."""
    return (index.to_bytes(4, "big") + os.urandom(60)) * (length // 64) + bytes(length % 64)


def image_block(path: Path, index: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(index * BLOCK_SIZE)
        data = handle.read(BLOCK_SIZE)
    return data + bytes(BLOCK_SIZE - len(data))


@dataclass
class Sent:
    """One request as botocore put it on the wire."""

    operation: str
    url: str
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        """An EC2/query-protocol body as flat key -> value (BlockDeviceMapping.1.Ebs.SnapshotId ...)."""
        return {key: values[0] for key, values in parse_qs(self.body.decode(), keep_blank_values=True).items()}

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass
class Recorder:
    sent: list[Sent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hook(self, request: Any, **kwargs: Any) -> None:
        operation = str(kwargs["event_name"]).split(".")[-1]
        body = request.body.encode() if isinstance(request.body, str) else request.body
        body = body if isinstance(body, bytes) else b""  # a streamed body is not kept
        with self._lock:
            self.sent.append(Sent(operation, request.url, {k.lower(): v.decode() if isinstance(v, bytes) else str(v)
                                                   for k, v in request.headers.items()},
                                  body))

    def of(self, operation: str) -> list[Sent]:
        with self._lock:
            return [sent for sent in self.sent if sent.operation == operation]

    def only(self, operation: str) -> Sent:
        matches = self.of(operation)
        assert len(matches) == 1, f"expected one {operation} request, saw {len(matches)}"
        return matches[0]


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


def error_response(status: int, code: str, message: str, *, protocol: str = "json") -> AWSResponse:
    """An error as the service would send it: JSON (EBS), EC2's XML, or S3's XML."""
    if protocol == "ec2":
        body = (f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
                f"<RequestID>injected</RequestID></Response>").encode()
        return AWSResponse("https://injected", status, {"Content-Type": "text/xml"}, _Body(body))
    if protocol == "s3":
        body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
        return AWSResponse("https://injected", status, {"Content-Type": "application/xml"}, _Body(body))
    body = json.dumps({"__type": code, "message": message}).encode()
    return AWSResponse("https://injected", status, {"x-amzn-ErrorType": code, "Content-Type": "application/json"},
                       _Body(body))


@dataclass
class Faults:
    """Answer some calls of one operation with an error instead of sending them."""

    fail: Callable[[int], bool]  # given the 1-based call number: inject an error?
    status: int
    code: str
    protocol: str = "json"
    calls: int = 0
    injected: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hook(self, request: Any, **_: Any) -> AWSResponse | None:
        with self._lock:
            self.calls += 1
            if not self.fail(self.calls):
                return None
            self.injected += 1
        return error_response(self.status, self.code, "injected by the test", protocol=self.protocol)


def session_with(*hooks: tuple[str, Hook]) -> Any:
    """A boto3 session whose clients (made later) all carry these event handlers."""
    session = boto3.Session()
    for event, handler in hooks:
        session.events.register(event, handler)
    return session


def write_manifest(path: Path, artifacts: dict[str, str], extra: str = "") -> Path:
    """A sealed manifest as a build writes it (only the parts publishing reads, plus a note to vary it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = seal({"format": FORMAT, "bootkiln": {"version": __version__, "commit": "test"},
                 "artifacts": artifacts, "note": extra})
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def manifest_seal(path: Path) -> str:
    return str(json.loads(path.read_text())[SEAL])
