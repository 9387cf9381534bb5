"""A fake EC2 instance metadata service (IMDS) on the host's loopback, for guests under QEMU user networking.

The installer reads its user-data from http://169.254.169.254/latest/user-data: IMDSv2 first (a session token
from ``PUT /latest/api/token``), IMDSv1 as the fallback. This serves that protocol from a file, so the reader can
be tried in QEMU and in unit tests without EC2. Tokens can be

* ``optional``: EC2's default; a GET without a token is answered, one with a bad token is not;
* ``required``: what ``invoke launch`` asks EC2 for; a GET without a token gets 401;
* ``v1-only``: an old service that knows no tokens: the token PUT gets 404 and token headers are ignored, so a
  client's fallback to IMDSv1 can be exercised.

Only behaviour AWS documents is reproduced: token TTLs of 1..21600 seconds (400 for a missing or bad one), 403 for
a token PUT carrying X-Forwarded-For, 401 for an invalid or expired token, 404 when there is no user-data. A few
meta-data keys with fixed values exist so a client's listing code has something to read.

:func:`qemu_netdev` makes a QEMU guest reach the server at 169.254.169.254:80.
"""

from __future__ import annotations

import os
import secrets
import selectors
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Self, cast, get_args
from urllib.parse import urlsplit

from bootkiln.errors import EnvironmentProblem, InputError

__all__ = [
    "GUEST_ADDRESS",
    "GUEST_DNS",
    "GUEST_GATEWAY",
    "GUEST_NETWORK",
    "IMDS_ADDRESS",
    "MAX_TTL",
    "META_DATA",
    "TOKEN_MODES",
    "FakeImds",
    "ImdsRequest",
    "TokenMode",
    "qemu_netdev",
    "relay",
    "token_mode",
]

TokenMode = Literal["optional", "required", "v1-only"]
TOKEN_MODES: Final[tuple[str, ...]] = get_args(TokenMode)

LOOPBACK: Final = "127.0.0.1"
IMDS_ADDRESS: Final = "169.254.169.254"
# libslirp forwards a guest address (guestfwd) only if it lies inside the virtual network (with the default
# 10.0.2.0/24 QEMU stops: "Conflicting/invalid host:port in guest forwarding rule"), so the whole link-local /16
# becomes the network. QEMU places its own addresses by keeping the host part of its 10.0.2.x defaults
# (net | 0.0.2.2, .3, .15), so under a /16 they move to 169.254.2.x. Checked with QEMU 7.2 / libslirp 4.7: the
# guest's udhcpc got 169.254.2.15/16, router 169.254.2.2, DNS 169.254.2.3.
GUEST_NETWORK: Final = "169.254.0.0/16"
GUEST_GATEWAY: Final = "169.254.2.2"  # slirp's NAT gateway, and its alias for the host's 127.0.0.1
GUEST_DNS: Final = "169.254.2.3"  # slirp's DNS forwarder
GUEST_ADDRESS: Final = "169.254.2.15"  # what slirp's DHCP hands the (first) guest

MAX_TTL: Final = 21600  # seconds; AWS refuses longer token lifetimes
TOKEN_PATH: Final = "/latest/api/token"  # noqa: S105 - a URL path, not a secret
USERDATA_PATH: Final = "/latest/user-data"
META_DATA_PATH: Final = "/latest/meta-data/"
TTL_HEADER: Final = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER: Final = "X-aws-ec2-metadata-token"  # noqa: S105 - a header name
# The guest's own view of itself, so a client comparing local-ipv4 with its address finds them equal.
META_DATA: Final[dict[str, str]] = {
    "instance-id": "i-0b00c1a1fa4e1dd5e",
    "local-hostname": "ip-169-254-2-15.ec2.internal",
    "local-ipv4": GUEST_ADDRESS,
}
RELAY_IDLE_SECONDS: Final = 60.0


@dataclass(frozen=True)
class ImdsRequest:
    method: str
    path: str
    status: int
    token_sent: bool

    def line(self) -> str:
        return f"{self.method} {self.path} -> {self.status} ({'token' if self.token_sent else 'no token'})"


@dataclass(frozen=True)
class _Reply:
    status: HTTPStatus
    body: bytes = b""
    content_type: str = "text/plain"
    headers: tuple[tuple[str, str], ...] = ()


def _error(status: HTTPStatus) -> _Reply:
    return _Reply(status, f"{status.value} - {status.phrase}\n".encode())


def token_mode(value: str) -> TokenMode:
    if value in TOKEN_MODES:
        return cast(TokenMode, value)
    raise InputError(f"unknown token mode {value!r}", hint=f"use one of: {', '.join(TOKEN_MODES)}")


class FakeImds:
    """The service on 127.0.0.1:<port> (0: any free port). Use it as a context manager, or call serve_forever()."""

    def __init__(self, userdata: Path | None, *, tokens: TokenMode = "optional", port: int = 0,
                 on_request: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.userdata = userdata  # read again for every request, so a test may rewrite or swap it
        self.tokens = token_mode(tokens)
        self._on_request = on_request
        self._clock = clock
        self._lock = threading.Lock()
        self._issued: dict[str, float] = {}  # token -> expiry on self._clock
        self._log: list[ImdsRequest] = []
        self._thread: threading.Thread | None = None
        try:
            self._server = _Server((LOOPBACK, port), self)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot listen on {LOOPBACK}:{port}: {exc.strerror}",
                                     hint="pick another port (0 picks any free one)") from exc

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def requests(self) -> list[ImdsRequest]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (Ctrl-C); close() afterwards."""
        self._server.serve_forever(poll_interval=0.2)

    def start(self) -> Self:
        """Serve in a background thread until close()."""
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"fakeimds-{self.port}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            # shutdown() waits for serve_forever() to notice, so only call it when that runs in our thread.
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def record(self, request: ImdsRequest) -> None:
        with self._lock:
            self._log.append(request)
        if self._on_request is not None:
            self._on_request(request.line())

    def answer(self, method: str, target: str, header: Callable[[str], str | None]) -> _Reply:
        path = urlsplit(target).path
        if method == "PUT":
            return self._put(path, header)
        return self._get(path, header(TOKEN_HEADER))

    def _put(self, path: str, header: Callable[[str], str | None]) -> _Reply:
        if path != TOKEN_PATH or self.tokens == "v1-only":
            return _error(HTTPStatus.NOT_FOUND)
        # AWS refuses token requests that went through a proxy: they may not come from the instance itself.
        if header("X-Forwarded-For") is not None:
            return _error(HTTPStatus.FORBIDDEN)
        raw_ttl = (header(TTL_HEADER) or "").strip()
        if not raw_ttl.isdecimal() or not 1 <= int(raw_ttl) <= MAX_TTL:
            return _error(HTTPStatus.BAD_REQUEST)
        ttl = int(raw_ttl)
        token = secrets.token_urlsafe(42)
        now = self._clock()
        with self._lock:
            self._issued = {known: expiry for known, expiry in self._issued.items() if expiry > now}
            self._issued[token] = now + ttl
        return _Reply(HTTPStatus.OK, token.encode(), headers=((TTL_HEADER, str(ttl)),))

    def _token_refused(self, token: str | None) -> bool:
        if self.tokens == "v1-only":
            return False  # an IMDSv1-only service does not know the header
        if token is None:
            return self.tokens == "required"
        with self._lock:
            expiry = self._issued.get(token)
        return expiry is None or self._clock() >= expiry

    def _get(self, path: str, token: str | None) -> _Reply:
        # EC2 checks the token before it looks at the path: without one, even a wrong path gets 401.
        if self._token_refused(token):
            return _error(HTTPStatus.UNAUTHORIZED)
        if path == USERDATA_PATH:
            try:
                data = self.userdata.read_bytes() if self.userdata is not None else None
            except FileNotFoundError:
                data = None
            if data is None:
                return _error(HTTPStatus.NOT_FOUND)
            return _Reply(HTTPStatus.OK, data, "application/octet-stream")
        if path in (META_DATA_PATH, META_DATA_PATH.rstrip("/")):
            return _Reply(HTTPStatus.OK, "\n".join(META_DATA).encode())
        if path.startswith(META_DATA_PATH) and path[len(META_DATA_PATH):] in META_DATA:
            return _Reply(HTTPStatus.OK, META_DATA[path[len(META_DATA_PATH):]].encode())
        return _error(HTTPStatus.NOT_FOUND)


class _Server(ThreadingHTTPServer):
    request_queue_size = 64  # socketserver's 5 drops connections when a test (or a boot) sends bursts

    def __init__(self, address: tuple[str, int], imds: FakeImds) -> None:
        self.imds = imds
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def version_string(self) -> str:
        return "EC2ws"  # what EC2's IMDS calls itself in the Server header

    def do_GET(self) -> None:
        self._reply(self.server.imds.answer("GET", self.path, self.headers.get))

    def do_PUT(self) -> None:
        self._reply(self.server.imds.answer("PUT", self.path, self.headers.get))

    def _reply(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Every answer passes here once, also the ones http.server makes itself (400 bad request line, 501).
        headers = getattr(self, "headers", None)
        token_sent = headers is not None and headers.get(TOKEN_HEADER) is not None
        status = int(code) if str(code).isdigit() else 0
        self.server.imds.record(ImdsRequest(self.command or "-", self.path or "-", status, token_sent))

    def log_message(self, format: str, *args: object) -> None:
        pass  # the request log and on_request replace http.server's stderr lines


def relay_argv(port: int) -> list[str]:
    """The command slirp runs for each guest connection: :func:`relay` to the server on 127.0.0.1:<port>."""
    return [sys.executable, "-m", "bootkiln.installer.fakeimds", "relay", str(port)]


def qemu_netdev(port: int, *, netdev_id: str = "net0") -> str:
    """The ``-netdev`` value whose guest reaches 127.0.0.1:<port> on the host at http://169.254.169.254/.

    Pair it with ``-device virtio-net-pci,netdev=<netdev_id>``. slirp's NAT stays on (no ``restrict``), so the
    guest also reaches the internet through the gateway and resolves names through the DNS address.

    guestfwd's ``cmd:`` form runs the relay once per guest connection. The other form, a chardev such as
    ``tcp:127.0.0.1:<port>``, is a single connection QEMU opens at startup: it carries no per-connection end, so
    after the server closes the first HTTP/1.0 answer every later request fails.
    """
    # libslirp splits the command like a shell (g_shell_parse_argv); QEMU's option parser needs commas doubled.
    command = " ".join(shlex.quote(arg) for arg in relay_argv(port)).replace(",", ",,")
    return f"user,id={netdev_id},net={GUEST_NETWORK},guestfwd=tcp:{IMDS_ADDRESS}:80-cmd:{command}"


def relay(port: int, guest: socket.socket) -> None:
    """Copy one guest connection to 127.0.0.1:<port> and back, passing on each side's end, until the server ends."""
    with guest, socket.create_connection((LOOPBACK, port), timeout=10) as server:
        peer = {guest: server, server: guest}
        with selectors.DefaultSelector() as selector:
            for end in peer:
                selector.register(end, selectors.EVENT_READ)
            while ready := selector.select(timeout=RELAY_IDLE_SECONDS):
                for key, _ in ready:
                    source = key.fileobj
                    assert isinstance(source, socket.socket)
                    data = source.recv(65536)
                    if data:
                        peer[source].sendall(data)
                        continue
                    if source is server:
                        return  # HTTP/1.0: the server has answered and closed; closing the guest's side ends it
                    selector.unregister(source)
                    server.shutdown(socket.SHUT_WR)  # the guest has sent everything (nc after its printf)


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "relay" or not argv[1].isdecimal():
        print("usage: python -m bootkiln.installer.fakeimds relay PORT  (run by QEMU's guestfwd)", file=sys.stderr)
        return 2
    # slirp gives the relay the guest's connection as stdin, stdout and stderr: nothing may be written to them.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        relay(int(argv[1]), socket.socket(fileno=os.dup(0)))
    except OSError:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
