"""Property tests for the profile loader: whatever a profile file holds, a Profile or an input error.

Profiles are generated three ways: arbitrary bytes, TOML documents built from the schema's own keys
(and some that are not) with values of every type, and the shipped profiles with lines edited.
`invoke check-profile` (in process: the same function the task calls) must exit 0 or 2 and let no
exception out; a few of them also go through the real CLI process.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from tests.support.properties import examples

from bootkiln.commands.build import check_profile
from bootkiln.errors import InputError
from bootkiln.profile.loader import load_profile
from bootkiln.profile.schema import Profile

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "profiles").glob("*.toml"))
SCRATCH = Path(tempfile.mkdtemp(prefix="bootkiln-properties-"))

# Values a profile key may be given: every TOML type, and strings that mean something somewhere.
STRINGS = st.one_of(
    st.sampled_from(["bookworm", "bookwrom", "rest", "512MiB", "-5", "1 GiB", "0", "/", "/root", "..", "../..",
                     "/dev/vda", "ext4", "lvm", "installer", "live", "default", "xz", "gzip", "zstd", "none",
                     "rootfs-base", "http://deb.debian.org/debian", "file:///", "20250520T000000Z", "ec-p256",
                     "generate", "amd64", "", " ", "\n", "é", "\x7f", "a" * 300]),
    st.text(max_size=20))
SCALARS = st.one_of(STRINGS, st.integers(-2**70, 2**70), st.booleans(),
                    st.floats(allow_nan=True, allow_infinity=True))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(STRINGS, inner, max_size=3)), max_leaves=8)


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation may hold (through list, dict, Optional, unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models(arg)]


def _is_list(annotation: Any) -> bool:
    origin = get_origin(annotation)
    return origin is list or (origin is Union and any(_is_list(arg) for arg in get_args(annotation)))


@st.composite
def table(draw: st.DrawFn, model: type[BaseModel], depth: int = 0) -> dict[str, Any]:
    """Some of the model's keys (now and then an unknown one), each with a value of its kind or any other."""
    names = [name for name in model.model_fields if name != "source"]
    chosen = draw(st.lists(st.sampled_from(names), max_size=min(len(names), 5), unique=True)) if names else []
    document: dict[str, Any] = {}
    for name in chosen:
        annotation = model.model_fields[name].annotation
        nested = _models(annotation)
        if nested and depth < 3 and draw(st.integers(0, 3)):
            inner = table(nested[0], depth + 1)
            document[name] = draw(st.lists(inner, max_size=3)) if _is_list(annotation) else draw(inner)
        else:
            document[name] = draw(VALUES)
    if draw(st.integers(0, 9)) == 0:
        document[draw(STRINGS)] = draw(VALUES)
    return document


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are TOML's (a lone surrogate makes invalid TOML: fine)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return "{" + ", ".join(f"{json.dumps(key)} = {toml_value(item)}" for key, item in value.items()) + "}"


def toml_document(document: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(key)} = {toml_value(value)}\n" for key, value in document.items())


@st.composite
def edited_shipped_profile(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(SHIPPED)).read_text().splitlines()
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "repeat", "value", "truncate"]))
        if action == "delete":
            del lines[index]
        elif action == "repeat":
            lines.insert(index, lines[index])
        elif action == "value" and " = " in lines[index]:
            lines[index] = lines[index].split(" = ", 1)[0] + " = " + toml_value(draw(VALUES))
        else:
            lines[index] = lines[index][: draw(st.integers(0, len(lines[index])))]
    return "\n".join(lines) + "\n"


PROFILE_TEXTS = st.one_of(table(Profile).map(toml_document), edited_shipped_profile())


def write(name: str, data: bytes) -> Path:
    path = SCRATCH / name
    path.write_bytes(data)
    return path


def loads_or_input_error(path: Path) -> Profile | None:
    try:
        return load_profile(str(path))
    except InputError as exc:
        assert exc.message and str(path) in exc.message + exc.hint, exc.message
        return None


@settings(max_examples=examples(150))
@given(st.binary(max_size=400))
def test_any_bytes_are_a_profile_or_an_input_error(data: bytes) -> None:
    loads_or_input_error(write("bytes.toml", data))


@settings(max_examples=examples(400))
@given(PROFILE_TEXTS)
def test_any_toml_is_a_profile_or_an_input_error(text: str) -> None:
    loads_or_input_error(write("generated.toml", text.encode(errors="surrogatepass")))


@settings(max_examples=examples(150))
@given(PROFILE_TEXTS)
def test_check_profile_exits_0_or_2_and_lets_no_exception_out(capsys: pytest.CaptureFixture[str], text: str) -> None:
    path = write("checked.toml", text.encode(errors="surrogatepass"))
    assert check_profile(str(path)) in (0, 2)
    assert "Traceback" not in capsys.readouterr().err


SAMPLES = [
    b'[debian]\nsuite = 5\n',
    b'[disk]\nsize = "-5"\n',
    b'[rootfs]\npackages = [[], {}]\n',
    bytes(range(256)),
    b'[userdata.disk]\npartitions = [{ name = "r", size = "rest", filesystem = "ext4", mountpoint = "/boot/." }]\n'
,
]


@pytest.mark.parametrize("data", SAMPLES)
def test_the_cli_check_profile_exits_2_without_a_traceback(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "odd.toml"
    path.write_bytes(data)
    env = {**os.environ, "BOOTKILN_CACHE": str(tmp_path / "cache"), "BOOTKILN_OUT": str(tmp_path / "out"),
           "NO_COLOR": "1"}
    env.pop("BOOTKILN_HOME", None)
    process = subprocess.run([sys.executable, "-m", "invoke", "check-profile", "--profile", str(path)], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=60, check=False)
    assert process.returncode == 2, process.stdout + process.stderr
    assert "Traceback" not in process.stdout + process.stderr
