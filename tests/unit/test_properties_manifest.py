"""Property tests for `rebuild`'s reading of a manifest: sealed correctly (anyone can), malformed anyhow.

Manifests as builds write them (of several profiles) are mutated anywhere in their tree (a value
replaced by any JSON, a key removed or added), or made up whole, then sealed again. `rebuild` must
refuse each with an InputError before it makes a build, or accept it and start one (a tripwire here).
"""

from __future__ import annotations

import json
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.properties import examples

from bootkiln.console import Reporter
from bootkiln.core.manifest import new_manifest, seal
from bootkiln.errors import InputError
from bootkiln.profile.loader import load_profile
from bootkiln.verify.reproduce import rebuild

SCRATCH = Path(tempfile.mkdtemp(prefix="bootkiln-manifests-"))
ARCHIVE = {"mirror": "http://deb.debian.org/debian", "suite": "bookworm", "snapshot": None,
           "release_sha256": "ab" * 32, "source_date_epoch": 1700000000}
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**64, 2**64) | st.floats() | st.text(max_size=12)
                    | st.sampled_from(["iso", "rootfs", "bogus", "boot.iso", "ab" * 32, "0.1.0", "/", "../x"]),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=3), max_leaves=6)


@cache
def written(profile: str | None) -> str:
    """A manifest as a build of `profile` writes it (made once: it hashes the checkout's inputs)."""
    data = new_manifest(load_profile(profile), ARCHIVE, {"tag": "t", "image_id": "sha256:x"},
                        {"iso": {"key": "k", "artifacts": {"boot.iso": "cd" * 32}}}, {"boot.iso": "cd" * 32})
    return json.dumps(data)


class BuildStarted(Exception):
    """The manifest passed every check and rebuild went on to make a build."""


@pytest.fixture(autouse=True)
def tripwire(monkeypatch: pytest.MonkeyPatch) -> None:
    def started(*args: object, **kwargs: object) -> None:
        raise BuildStarted

    monkeypatch.setattr("bootkiln.pipeline.Build", started)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(written(draw(st.sampled_from([None, "installer", "diskless"]))))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from([p for p in _paths(data) if p and p[0] != "manifest_sha256"]))
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(JSON)
        elif action == "remove":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(JSON)
        if not isinstance(data, dict):
            break
    return data


MANIFESTS = st.one_of(mutated(), st.dictionaries(st.sampled_from(["format", "bootkiln", "profile", "stages",
                                                                  "inputs", "artifacts", "archive", "x"]), JSON)
                      .map(lambda d: {**d, "format": 1}))


def started(data: dict[str, Any]) -> bool:
    """Whether rebuild went as far as making a build; an InputError naming the file is the other way."""
    path = SCRATCH / "manifest.json"
    path.write_text(json.dumps(seal(data) if isinstance(data, dict) else data))
    try:
        rebuild(path, Reporter(quiet_output=True))
    except InputError as exc:
        assert exc.message.startswith(str(path)), exc.message
        return False
    except BuildStarted:
        return True
    raise AssertionError("rebuild returned without building")


@settings(max_examples=examples(300))
@given(MANIFESTS)
def test_a_sealed_manifest_is_refused_as_input_or_rebuilt(data: dict[str, Any]) -> None:
    started(data)


@settings(max_examples=examples(60))
@given(st.binary(max_size=200) | JSON.map(lambda value: json.dumps(value).encode()))
def test_any_file_as_a_manifest_is_an_input_error(data: bytes) -> None:
    path = SCRATCH / "any.json"
    path.write_bytes(data)
    with pytest.raises(InputError):
        rebuild(path, Reporter(quiet_output=True))


def test_the_unmutated_manifests_pass_every_check() -> None:
    for profile in (None, "installer", "diskless"):
        assert started(json.loads(written(profile)))
