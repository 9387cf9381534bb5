"""The engine module's pure parts: capability masks, line splitting, and which engine to talk to."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from bootkiln.core.engine import DEFAULT_SOCKET, Endpoint, missing_capabilities, resolve_endpoint, split_lines
from bootkiln.errors import Fault, InputError

STATUS = "Name:\tbash\nState:\tS (sleeping)\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\n" \
         "CapEff:\t000001fffeffffff\nCapBnd:\t{mask}\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\n"


# --- capabilities ---------------------------------------------------------------------------------

def test_missing_capability_is_named() -> None:
    assert missing_capabilities(STATUS.format(mask="000001fffeffffff")) == ["SYS_RESOURCE"]


def test_full_bounding_set_misses_nothing() -> None:
    assert missing_capabilities(STATUS.format(mask="000001ffffffffff")) == []


def test_older_kernel_lacks_the_newest_capabilities() -> None:
    assert missing_capabilities(STATUS.format(mask="0000003fffffffff")) == ["PERFMON", "BPF",
                                                                               "CHECKPOINT_RESTORE"]


def test_several_missing_capabilities_in_bit_order() -> None:
    mask = 0x1ffffffffff & ~(1 << 21) & ~(1 << 0)
    assert missing_capabilities(STATUS.format(mask=f"{mask:016x}")) == ["CHOWN", "SYS_ADMIN"]


def test_status_without_capbnd_misses_nothing() -> None:
    assert missing_capabilities("Name:\tbash\nCapEff:\t0000000000000000\n") == []


# --- output lines ---------------------------------------------------------------------------------

def test_lines_split_across_chunks_are_joined() -> None:
    assert list(split_lines([b"hel", b"lo\nwor", b"ld\n", b"!"])) == ["hello", "world", "!"]


def test_crlf_and_bare_cr_end_lines() -> None:
    assert list(split_lines([b"one\r\ntwo\r\n"])) == ["one", "two"]
    assert list(split_lines([b" 10%\r 50%\r100%\ndone\n"])) == [" 10%", " 50%", "100%", "done"]


def test_empty_lines_are_kept_and_no_trailing_empty_line_is_added() -> None:
    assert list(split_lines([b"a\n\nb\n"])) == ["a", "", "b"]
    assert list(split_lines([])) == []
    assert list(split_lines([b"", b""])) == []


def test_utf8_split_across_chunks_survives() -> None:
    data = "café ✓\n".encode()
    assert list(split_lines([data[:4], data[4:5], data[5:]])) == ["café ✓"]
    assert list(split_lines([b"bad \xff byte\n"])) == ["bad \ufffd byte"]


# --- endpoints ------------------------------------------------------------------------------------

def docker_config(folder: Path, config: dict[str, object], contexts: dict[str, str] | None = None) -> Path:
    """A DOCKER_CONFIG folder with config.json and contexts laid out as the docker CLI stores them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    for name, host in (contexts or {}).items():
        meta = folder / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
        meta.mkdir(parents=True)
        (meta / "meta.json").write_text(json.dumps({
            "Name": name, "Metadata": {},
            "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}},
        }))
    return folder


def test_docker_host_wins() -> None:
    endpoint = resolve_endpoint({"DOCKER_HOST": "tcp://1.2.3.4:2375", "DOCKER_CONTEXT": "elsewhere"})
    assert endpoint == Endpoint("tcp://1.2.3.4:2375", "DOCKER_HOST")
    assert endpoint.is_local is False


def test_no_current_context_means_the_default_socket(tmp_path: Path) -> None:
    config = docker_config(tmp_path / "docker", {"auths": {}})
    endpoint = resolve_endpoint({"DOCKER_CONFIG": str(config)})
    assert endpoint.url == DEFAULT_SOCKET == "unix:///var/run/docker.sock"
    assert endpoint.origin == "default socket"
    assert endpoint.is_local is True


def test_default_context_and_unreadable_config_mean_the_default_socket(tmp_path: Path) -> None:
    config = docker_config(tmp_path / "docker", {"currentContext": "default"})
    assert resolve_endpoint({"DOCKER_CONFIG": str(config)}).url == DEFAULT_SOCKET
    (config / "config.json").write_text("{not json")
    assert resolve_endpoint({"DOCKER_CONFIG": str(config)}).url == DEFAULT_SOCKET
    assert resolve_endpoint({"DOCKER_CONFIG": str(tmp_path / "absent")}).url == DEFAULT_SOCKET


def test_unknown_docker_context_is_an_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # docker-py finds the context store through the process environment, not the mapping passed in.
    config = docker_config(tmp_path / "docker", {})
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    with pytest.raises(InputError) as caught:
        resolve_endpoint({"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "nosuchcontext"})
    assert "'nosuchcontext'" in caught.value.message
    assert caught.value.fault is Fault.INPUT
    assert "docker context ls" in caught.value.hint


def test_named_and_current_contexts_are_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = docker_config(tmp_path / "docker", {"currentContext": "remote"},
                           {"remote": "tcp://10.0.0.5:2376", "local": "unix:///run/user/1000/docker.sock"})
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    current = resolve_endpoint({"DOCKER_CONFIG": str(config)})
    assert (current.url, current.origin, current.is_local) == ("tcp://10.0.0.5:2376", "Docker context 'remote'",
                                                               False)
    named = resolve_endpoint({"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "local"})
    assert (named.url, named.origin, named.is_local) == ("unix:///run/user/1000/docker.sock",
                                                         "Docker context 'local'", True)


@pytest.mark.parametrize(("url", "local"), [("unix:///x.sock", True), ("npipe:////./pipe/docker", True),
                                            ("tcp://h:2376", False), ("ssh://user@h", False)])
def test_is_local_follows_the_scheme(url: str, local: bool) -> None:
    assert Endpoint(url, "test").is_local is local
