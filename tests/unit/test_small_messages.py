"""Smaller messages from issue 16: each says what is allowed, in the user's terms, whole."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest

from bootkiln.core.engine import connect
from bootkiln.errors import EnvironmentProblem, InputError
from bootkiln.profile.loader import load_profile

WriteProfile = Callable[[str], Path]


def refused(path: Path) -> InputError:
    with pytest.raises(InputError) as caught:
        load_profile(str(path))
    return caught.value


@pytest.mark.parametrize(("body", "key", "given"), [
    ("[disk]\nsize = -5\n", "disk.size", "-5"),
    ('[iso]\nmax_size = "-5MiB"\n', "iso.max_size", "'-5MiB'"),
    ('[initramfs]\nmax_size = "12 parsecs"\n', "initramfs.max_size", "'12 parsecs'"),
])
def test_a_bad_size_says_what_a_size_is(write_profile: WriteProfile, body: str, key: str, given: str) -> None:
    error = refused(write_profile(body))
    assert f"key '{key}': a size is a whole number of bytes (0 or more), or a string like '512MiB'" in error.message
    assert f"(got {given})" in error.message
    assert "could not parse" not in error.message


@pytest.mark.parametrize("value", ['"gen"', "5", '["generate"]'])
def test_certs_says_what_is_allowed_without_pydantic_names(write_profile: WriteProfile, value: str) -> None:
    error = refused(write_profile(f"[userdata]\ncerts = {value}\n"))
    assert "key 'userdata.certs': expected 'generate', or a table with the keys ca, cert, crl, key" in error.message
    assert "literal[" not in error.message and "CertFiles" not in error.message
    assert error.message.count("userdata.certs") == 1


def test_a_certs_table_with_missing_keys_names_them(write_profile: WriteProfile) -> None:
    error = refused(write_profile('[userdata]\ncerts = { ca = "ca.pem" }\n'))
    for missing in ("crl", "cert", "key"):
        assert f"key 'userdata.certs.{missing}': Field required" in error.message
    assert "literal[" not in error.message and "CertFiles" not in error.message


def test_a_partition_size_union_is_described_in_one_line(write_profile: WriteProfile) -> None:
    error = refused(write_profile('[userdata.disk]\npartitions = [{ name = "r", size = -1, filesystem = "ext4", '
                                  'mountpoint = "/" }]\n'))
    assert "key 'userdata.disk.partitions.0.size': expected greater than or equal to 1, or 'rest' (got -1)" \
        in error.message
    assert "constrained-int" not in error.message


@pytest.mark.parametrize("data", [bytes(range(256)) * 4, b"name = \"x\"\n\0\0\0", b"\x89PNG\r\n\x1a\n" + b"\xff" * 64,
                                  bytes(range(1, 128)) * 8])
def test_a_binary_profile_gets_a_hint(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "image.toml"
    path.write_bytes(data)
    error = refused(path)
    assert f"{path}: not a text file" in error.message
    assert "TOML text file" in error.hint


class LongErrorEngine(BaseHTTPRequestHandler):
    """An engine (or a proxy in front of one) that answers every request with a long error."""

    message = ("client version 1.99 is too new. Maximum supported API version is 1.41. " * 4 +
               "The daemon refused the request because its policy plugin denied it: " + "reason " * 20).strip()

    def do_GET(self) -> None:
        body = json.dumps({"message": self.message}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def long_error_engine() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), LongErrorEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_engines_error_is_shown_whole(long_error_engine: str) -> None:
    assert len(LongErrorEngine.message) > 300
    with pytest.raises(EnvironmentProblem) as caught:
        connect(lambda _: None, {"DOCKER_HOST": long_error_engine, "HOME": "/nonexistent"})
    assert LongErrorEngine.message in caught.value.message


def test_a_page_long_engine_error_is_cut_after_a_sentence_saying_so(long_error_engine: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LongErrorEngine, "message", "The request was refused. " * 100)
    with pytest.raises(EnvironmentProblem) as caught:
        connect(lambda _: None, {"DOCKER_HOST": long_error_engine, "HOME": "/nonexistent"})
    message = caught.value.message
    assert "characters of the engine's message left out]" in message
    shown = message.split("): ", 1)[1].split(" [")[0]
    assert shown.endswith("refused.")


def test_a_failed_pull_shows_the_engines_message_whole() -> None:
    import docker.errors

    from bootkiln.console import Reporter
    from bootkiln.core.builder import BuilderFactory
    from bootkiln.core.runner import Runner
    from bootkiln.profile.schema import BuilderSettings

    message = ("pull access denied for example.invalid/debian, repository does not exist or may require "
               "'docker login': denied: requested access to the resource is denied. " * 3).strip()

    class Images:
        def get(self, name: str) -> None:
            raise docker.errors.ImageNotFound("no such image")

        def pull(self, name: str) -> None:
            raise docker.errors.APIError(message)

    engine: Any = type("FakeEngine", (), {"client": type("Client", (), {"images": Images()})()})()
    factory = BuilderFactory(engine, Runner(Reporter(quiet_output=True)), Reporter(quiet_output=True))
    with pytest.raises(EnvironmentProblem) as caught:
        factory._choose(BuilderSettings(base="image", image="example.invalid/debian:12"))
    assert message in caught.value.message


class ArmEngine:
    """An engine on an arm64 host (Docker Desktop on Apple Silicon), remote, that must not be asked for more."""

    endpoint = type("Endpoint", (), {"url": "ssh://mac", "is_local": False})()

    def architecture(self) -> str:
        return "arm64"


@pytest.mark.parametrize(("base", "error", "words"), [
    ("image", InputError, 'builder.base = "image" cannot make an amd64 builder'),
    ("auto", EnvironmentProblem, "needs the Docker engine on this machine"),
])
def test_an_emulated_builder_that_cannot_be_made_is_refused_first(base: str, error: type[Exception],
                                                                   words: str) -> None:
    from bootkiln.console import Reporter
    from bootkiln.core.builder import BuilderFactory
    from bootkiln.core.runner import Runner
    from bootkiln.profile.schema import BuilderSettings

    factory = BuilderFactory(cast(Any, ArmEngine()), Runner(Reporter(quiet_output=True)), Reporter(quiet_output=True))
    with pytest.raises(error, match=re.escape(words)):
        factory.ensure(BuilderSettings(base=base), cast(Any, None), "amd64")  # no archive: nothing may be fetched


def test_our_own_messages_carry_no_pydantic_prefix(write_profile: WriteProfile) -> None:
    error = refused(write_profile("[disk]\nsize = 1\n"))
    assert "key 'disk.size': must be a whole number of MiB" in error.message
    assert "Value error" not in error.message
