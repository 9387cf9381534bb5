"""The fake EC2 metadata service, over real HTTP on loopback: tokens, v1 fallback, errors, the log, the relay."""

from __future__ import annotations

import http.client
import shlex
import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from bootkiln.commands import installer as cli
from bootkiln.errors import EnvironmentProblem, InputError
from bootkiln.installer.fakeimds import (
    MAX_TTL,
    META_DATA,
    FakeImds,
    ImdsRequest,
    TokenMode,
    qemu_netdev,
)

TTL = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN = "X-aws-ec2-metadata-token"  # noqa: S105 - a header name
# Not UTF-8 and with CR/LF inside: the answer must be these bytes exactly.
PAYLOAD = b"\x1f\x8b\x08\x00user-data\r\n\xff\xfe\x00 end"

Response = tuple[int, bytes, http.client.HTTPMessage]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def userdata(tmp_path: Path) -> Path:
    path = tmp_path / "user-data"
    path.write_bytes(PAYLOAD)
    return path


@contextmanager
def serving(userdata: Path | None, tokens: TokenMode = "optional", clock: Clock | None = None,
            lines: list[str] | None = None) -> Iterator[FakeImds]:
    with FakeImds(userdata, tokens=tokens, clock=clock or Clock(),
                  on_request=lines.append if lines is not None else None) as imds:
        yield imds


def call(imds: FakeImds, method: str, path: str, headers: dict[str, str] | None = None) -> Response:
    connection = http.client.HTTPConnection("127.0.0.1", imds.port, timeout=5)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), response.headers
    finally:
        connection.close()


def get_token(imds: FakeImds, ttl: str = "300") -> str:
    status, body, headers = call(imds, "PUT", "/latest/api/token", {TTL: ttl})
    assert status == 200, body
    assert headers[TTL] == ttl
    assert headers["Content-Type"] == "text/plain"
    token = body.decode()
    assert len(token) >= 40
    return token


def test_token_then_user_data(userdata: Path) -> None:
    with serving(userdata) as imds:
        token = get_token(imds)
        status, body, headers = call(imds, "GET", "/latest/user-data", {TOKEN: token})
        assert status == 200
        assert body == PAYLOAD
        assert headers["Content-Type"] == "application/octet-stream"
        assert get_token(imds) != token  # each PUT makes a new random token


def test_v1_allowed_when_tokens_optional(userdata: Path) -> None:
    with serving(userdata, "optional") as imds:
        status, body, _ = call(imds, "GET", "/latest/user-data")
    assert (status, body) == (200, PAYLOAD)


def test_v1_refused_when_tokens_required(userdata: Path) -> None:
    with serving(userdata, "required") as imds:
        status, body, _ = call(imds, "GET", "/latest/user-data")
        assert status == 401
        assert PAYLOAD not in body
        # The same server does answer once there is a token: the 401 is about the token alone.
        status, body, _ = call(imds, "GET", "/latest/user-data", {TOKEN: get_token(imds)})
        assert (status, body) == (200, PAYLOAD)


@pytest.mark.parametrize("tokens", ["optional", "required"])
def test_invalid_token_is_refused_even_when_tokens_are_optional(userdata: Path, tokens: TokenMode) -> None:
    with serving(userdata, tokens) as imds:
        token = get_token(imds)
        status, body, _ = call(imds, "GET", "/latest/user-data", {TOKEN: token + "x"})
        assert status == 401
        assert PAYLOAD not in body
        assert call(imds, "GET", "/latest/user-data", {TOKEN: token})[0] == 200


@pytest.mark.parametrize("tokens", ["optional", "required"])
def test_token_expires_after_its_ttl(userdata: Path, tokens: TokenMode) -> None:
    clock = Clock()
    with serving(userdata, tokens, clock) as imds:
        token = get_token(imds, ttl="5")
        clock.now += 4.9
        assert call(imds, "GET", "/latest/user-data", {TOKEN: token})[:2] == (200, PAYLOAD)
        clock.now += 0.1
        assert call(imds, "GET", "/latest/user-data", {TOKEN: token})[0] == 401
        # A fresh token works again at the same moment.
        assert call(imds, "GET", "/latest/user-data", {TOKEN: get_token(imds)})[0] == 200


@pytest.mark.parametrize("ttl", [None, "", "0", "-1", "1.5", "abc", str(MAX_TTL + 1), "99999999999999999999"])
def test_invalid_ttl_is_a_bad_request(userdata: Path, ttl: str | None) -> None:
    with serving(userdata) as imds:
        status, _, headers = call(imds, "PUT", "/latest/api/token", {} if ttl is None else {TTL: ttl})
    assert status == 400
    assert TTL not in headers


@pytest.mark.parametrize("ttl", ["1", str(MAX_TTL)])
def test_ttl_limits_are_accepted(userdata: Path, ttl: str) -> None:
    with serving(userdata) as imds:
        get_token(imds, ttl)


def test_token_put_through_a_proxy_is_forbidden(userdata: Path) -> None:
    with serving(userdata) as imds:
        status, body, headers = call(imds, "PUT", "/latest/api/token", {TTL: "300", "X-Forwarded-For": "10.1.2.3"})
        assert status == 403
        assert TTL not in headers
        assert call(imds, "GET", "/latest/user-data", {TOKEN: body.decode().strip()})[0] == 401


def test_no_user_data_is_404(tmp_path: Path) -> None:
    with serving(None) as imds:
        assert call(imds, "GET", "/latest/user-data")[0] == 404
        assert call(imds, "GET", "/latest/user-data", {TOKEN: get_token(imds)})[0] == 404


def test_user_data_is_read_for_every_request(tmp_path: Path) -> None:
    path = tmp_path / "later"
    with serving(path) as imds:
        assert call(imds, "GET", "/latest/user-data")[0] == 404
        path.write_bytes(b"first")
        assert call(imds, "GET", "/latest/user-data")[:2] == (200, b"first")
        path.write_bytes(b"second")
        assert call(imds, "GET", "/latest/user-data")[:2] == (200, b"second")
        replacement = tmp_path / "other"
        replacement.write_bytes(b"third")
        imds.userdata = replacement
        assert call(imds, "GET", "/latest/user-data")[:2] == (200, b"third")


def test_v1_only_service_has_no_token_api(userdata: Path) -> None:
    with serving(userdata, "v1-only") as imds:
        status, body, headers = call(imds, "PUT", "/latest/api/token", {TTL: "300"})
        assert status in (404, 405)
        assert TTL not in headers
        # Such a service ignores the token header: a client falling back (with or without it) gets the data.
        assert call(imds, "GET", "/latest/user-data")[:2] == (200, PAYLOAD)
        assert call(imds, "GET", "/latest/user-data", {TOKEN: body.decode().strip()})[:2] == (200, PAYLOAD)


def test_meta_data(userdata: Path) -> None:
    with serving(userdata, "required") as imds:
        token = {TOKEN: get_token(imds)}
        status, body, _ = call(imds, "GET", "/latest/meta-data/", token)
        assert status == 200
        assert body.decode().split("\n") == ["instance-id", "local-hostname", "local-ipv4"]
        for key, value in META_DATA.items():
            assert call(imds, "GET", f"/latest/meta-data/{key}", token)[:2] == (200, value.encode())
        assert call(imds, "GET", "/latest/meta-data/instance-id")[0] == 401
        for path in ("/latest/meta-data/ami-id", "/latest/userdata", "/", "/latest/api/token"):
            assert call(imds, "GET", path, token)[0] == 404, path
        assert call(imds, "PUT", "/latest/user-data", {TTL: "300"})[0] == 404
    assert META_DATA["instance-id"].startswith("i-")


def test_request_log_and_lines(userdata: Path) -> None:
    lines: list[str] = []
    with serving(userdata, "required", lines=lines) as imds:
        token = get_token(imds)
        call(imds, "GET", "/latest/user-data", {TOKEN: token})
        call(imds, "GET", "/latest/user-data")
        call(imds, "PUT", "/latest/api/token")
        call(imds, "DELETE", "/latest/user-data")  # http.server itself answers 501
        log = imds.requests
    assert log == [
        ImdsRequest("PUT", "/latest/api/token", 200, token_sent=False),
        ImdsRequest("GET", "/latest/user-data", 200, token_sent=True),
        ImdsRequest("GET", "/latest/user-data", 401, token_sent=False),
        ImdsRequest("PUT", "/latest/api/token", 400, token_sent=False),
        ImdsRequest("DELETE", "/latest/user-data", 501, token_sent=False),
    ]
    assert lines == [request.line() for request in log]
    assert lines[1] == "GET /latest/user-data -> 200 (token)"
    assert token not in "".join(lines)


def test_request_log_is_complete_under_concurrent_requests(userdata: Path) -> None:
    with serving(userdata) as imds, ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda n: call(imds, "GET", f"/latest/meta-data/local-ipv4?n={n}")[0], range(40)))
        log = imds.requests
    assert statuses == [200] * 40
    assert sorted(request.path for request in log) == sorted(f"/latest/meta-data/local-ipv4?n={n}" for n in range(40))


def test_port_in_use_is_an_environment_problem(userdata: Path) -> None:
    with serving(userdata) as imds, pytest.raises(EnvironmentProblem, match=f"127.0.0.1:{imds.port}"):
        FakeImds(userdata, port=imds.port)


def test_unknown_token_mode_is_an_input_error(userdata: Path) -> None:
    with pytest.raises(InputError, match="'v2'"):
        FakeImds(userdata, tokens="v2")  # type: ignore[arg-type]


def test_qemu_netdev_forwards_imds_inside_a_link_local_network() -> None:
    netdev = qemu_netdev(18100)
    assert netdev.startswith("user,id=net0,net=169.254.0.0/16,")
    assert "restrict" not in netdev  # the same netdev serves online installs through slirp's NAT
    rule = netdev.split(",guestfwd=", 1)[1]
    assert rule.startswith("tcp:169.254.169.254:80-cmd:")
    assert shlex.split(rule.removeprefix("tcp:169.254.169.254:80-cmd:"))[-2:] == ["relay", "18100"]


def test_relay_command_carries_connections_like_slirp_does(userdata: Path) -> None:
    """Run the netdev's guestfwd command the way libslirp does: the guest's connection as stdin/stdout/stderr."""
    with serving(userdata, "required") as imds:
        rule = qemu_netdev(imds.port).split(",guestfwd=", 1)[1].replace(",,", ",")
        argv = shlex.split(rule.split("-cmd:", 1)[1])

        def through_relay(request: bytes) -> bytes:
            guest, relay_end = socket.socketpair()
            with guest, relay_end:
                end = relay_end.fileno()
                process = subprocess.Popen(argv, stdin=end, stdout=end, stderr=end)
                relay_end.close()
                guest.sendall(request)
                guest.shutdown(socket.SHUT_WR)  # what busybox nc does after printf's last byte
                guest.settimeout(10)
                answer = b""
                while chunk := guest.recv(65536):
                    answer += chunk
            assert process.wait(timeout=10) == 0
            return answer

        answer = through_relay(f"PUT /latest/api/token HTTP/1.0\r\n{TTL}: 300\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.0 200 OK\r\n")
        token = answer.rsplit(b"\r\n\r\n", 1)[1].decode()
        answer = through_relay(f"GET /latest/user-data HTTP/1.0\r\n{TOKEN}: {token}\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.0 200 OK\r\n")
        assert answer.endswith(b"\r\n\r\n" + PAYLOAD)
        assert [request.status for request in imds.requests] == [200, 200]


def test_cli_refuses_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.gz"
    assert cli.fake_imds(str(missing), 0, "optional") == 2
    assert f"user-data file {missing} does not exist" in capsys.readouterr().out


def test_cli_serves_until_ctrl_c(userdata: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Response] = []

    def serve_then_interrupt(imds: FakeImds) -> None:
        imds.start()
        seen.append(call(imds, "GET", "/latest/user-data"))
        raise KeyboardInterrupt

    monkeypatch.setattr(FakeImds, "serve_forever", serve_then_interrupt)
    assert cli.fake_imds(str(userdata), 0, "optional") == 0
    assert [response[:2] for response in seen] == [(200, PAYLOAD)]
    out = capsys.readouterr().out
    assert "-netdev 'user,id=net0,net=169.254.0.0/16,guestfwd=tcp:169.254.169.254:80-cmd:" in out
    assert "-device virtio-net-pci,netdev=net0" in out
    assert "GET /latest/user-data -> 200 (no token)" in out
    assert "stopped after 1 requests" in out
