"""Property tests for both user-data readers: whatever the bytes, an input error or a valid document.

The Python reader (installer/userdata.py `decode`) must return a UserData or raise InputError, never
anything else. The busybox reader the installer runs (userdata-read.sh) must exit 0 or 1, leave
nothing behind on 1, and on 0 hand the installer only what the schema allows: plain mountpoints,
none reserved or repeated, and `/` among them. Every document the Python reader accepts, the
busybox reader accepts too: what `invoke userdata` writes, the installer reads.
"""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tests.support.properties import examples
from tests.unit.conftest import USERDATA_READER

from bootkiln.errors import InputError
from bootkiln.installer import pki
from bootkiln.installer.userdata import MAGIC, UserData, decode, encode, host_names, render
from bootkiln.profile.userdata import UserdataSettings

READER = USERDATA_READER


def _valid_text() -> str:
    import tempfile

    settings_ = UserdataSettings.model_validate({
        "hostname": "web1.example.com", "puppet": {"server": "puppet.example.com"},
        "disk": {"device": "/dev/vda", "partitions": [
            {"name": "data", "size": "512MiB", "filesystem": "xfs", "mountpoint": "/data"},
            {"name": "pv", "size": "rest", "filesystem": "lvm"}],
            "volume_group": {"name": "vg0", "logical_volumes": [
                {"name": "root", "size": "8GiB", "filesystem": "ext4", "mountpoint": "/"},
                {"name": "swap", "size": 1024, "filesystem": "swap"}]}}})
    names = host_names(settings_, None, where="test")
    with tempfile.TemporaryDirectory() as folder:
        certs = pki.generate(Path(folder), certname=names.certname, hostname=names.hostname, server=names.server,
                             key_type="ec-p256")
    return gzip.decompress(encode(render(settings_, names=names, certs=certs)).blob).decode()


VALID = _valid_text()
VALID_LINES = VALID.split("\n")[:-1]
HEAD_LINES = [line for line in VALID_LINES if not line.startswith(("begin=", "end=", "-----")) and "=" in line]
PEM_LINES = [line for line in VALID_LINES if line not in HEAD_LINES]

# Values from the alphabets the format uses, with the characters that matter at its edges.
WORDS = st.sampled_from(["1", "2", "rest", "-", "/", "/.", "/..", "/boot", "/boot/efi", "/boot/.", "/srv/../boot",
                         "//", "/srv/", "ext4", "xfs", "vfat", "swap", "lvm", "true", "false", "vg0", "pv", "root",
                         "0", "007", "0512", "99999999999999999999", "a-.b", "x" * 70, "/dev/vda", "/dev/../etc",
                         "web1.example.com", "a..b",
                         "-a", "a-", "x" * 64, "production", "'", '"', "$(reboot)", "`id`", ";", "\\", "\t", " "])
TOKENS = st.one_of(WORDS, st.text(alphabet="abz019./-_ =:'\"$", max_size=12))
KEYS = st.sampled_from(["version", "hostname", "disk.device", "disk.wipe", "part", "vg", "lv", "puppet.server",
                        "puppet.environment", "puppet.certname", "begin", "end", "foo", ""])


@st.composite
def field_line(draw: st.DrawFn) -> str:
    key = draw(KEYS)
    if key in ("part", "lv"):
        return f"{key}=" + " ".join(draw(st.lists(TOKENS, min_size=0, max_size=6)))
    if key == "vg":
        return "vg=" + " ".join(draw(st.lists(TOKENS, min_size=0, max_size=3)))
    if key in ("begin", "end"):
        return f"{key}=" + draw(st.sampled_from(["ca", "crl", "cert", "key", "x", ""]))
    return f"{key}=" + draw(TOKENS)


@st.composite
def mutated_document(draw: st.DrawFn) -> str:
    """The valid document with a few lines deleted, repeated, replaced or inserted."""
    lines = list(VALID_LINES)
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "repeat", "replace", "insert", "edit"]))
        if action == "delete" and len(lines) > 1:
            del lines[index]
        elif action == "repeat":
            lines.insert(index, lines[index])
        elif action == "replace":
            lines[index] = draw(field_line())
        elif action == "insert":
            lines.insert(index, draw(st.one_of(field_line(), st.sampled_from(PEM_LINES), st.text(max_size=20))))
        else:
            line = lines[index]
            cut = draw(st.integers(0, len(line)))
            lines[index] = line[:cut] + draw(st.sampled_from(["", " ", "/..", ".", "=", "\r", "\0", "é"])) \
                + line[cut + draw(st.integers(0, 3)):]
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n"]))


@st.composite
def generated_document(draw: st.DrawFn) -> str:
    """A document made from its kinds of lines, in any order and number."""
    head = [MAGIC] if draw(st.booleans()) else []
    body = draw(st.lists(st.one_of(field_line(), st.sampled_from(HEAD_LINES)), max_size=14))
    pems = draw(st.sampled_from(["\n".join(PEM_LINES), ""]))
    return "\n".join([*head, *body, pems]) + "\n"


DOCUMENTS = st.one_of(mutated_document(), generated_document())


def _python_reads(blob: bytes) -> UserData | None:
    try:
        return decode(blob)
    except InputError:
        return None


@settings(max_examples=examples(300))
@given(st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda b: gzip.compress(b, mtime=0))))
def test_decode_of_any_bytes_is_a_document_or_an_input_error(blob: bytes) -> None:
    _python_reads(blob)


@settings(max_examples=examples(800))
@given(DOCUMENTS)
@example(VALID.replace("part=data 512 xfs /data", "part=data 512 xfs /boot/."))
@example(VALID.replace("lv=root 8192 ext4 /", "lv=root 8192 ext4 /../../../../etc"))
def test_decode_of_any_document_is_a_document_or_an_input_error(text: str) -> None:
    document = _python_reads(gzip.compress(text.encode(errors="surrogateescape"), mtime=0))
    if document is not None:
        _assert_plain_layout([(fs.mountpoint or "-") for fs in document.disk.filesystems()])


def _assert_plain_layout(mounts: list[str]) -> None:
    mounted = [m for m in mounts if m != "-"]
    for mount in mounted:
        parts = mount.split("/")
        assert mount.startswith("/") and (mount == "/" or all(p not in ("", ".", "..") for p in parts[1:])), mount
        assert mount not in ("/boot", "/boot/efi"), mount
    assert len(set(mounted)) == len(mounted) and "/" in mounted, mounts




@settings(max_examples=examples(300))
@given(DOCUMENTS)
@example(VALID)
@example(VALID.replace("part=data 512 xfs /data", "part=data 512 xfs /boot/."))
@example(VALID.replace("-----BEGIN CERTIFICATE-----\n", "-----BEGIN CERTIFICATE-----\npart=1 \n", 1))  # found by deep
@example(VALID.replace("-----BEGIN CERTIFICATE-----\n", "-----BEGIN CERTIFICATE-----\nversion=\\\n", 1))  # found in CI
@example(VALID.replace("part=data 512", "part= data 512"))  # found by deep
@example(VALID.replace("part=data 512", "part=\rdata 512"))  # found by deep
@example(VALID.replace("part=data 512", "part=data 0512"))
@example(VALID.replace("hostname=web1.example.com", "hostname=web1..example.com"))
@example(VALID.replace("hostname=web1.example.com", "hostname=web1-.example.com"))
@example(VALID.replace("puppet.environment=production", "puppet.environment=" + "p" * 65))
@example(VALID[:-1])
@example(VALID.replace("lv=swap 1024 swap -\n", "lv=swap 1024 swap -\nlv=swap 1024 swap -\n"))  # found by deep
def test_busybox_reader_accepts_what_python_accepts_and_only_plain_layouts(
        busybox_path: Path, tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    blob = gzip.compress(text.encode(errors="surrogateescape"), mtime=0)
    folder = tmp_path_factory.mktemp("read")
    (folder / "user-data").write_bytes(blob)
    out = folder / "out"
    process = subprocess.run([str(busybox_path / "sh"), str(READER), str(folder / "user-data"), str(out)],
                             capture_output=True, env={"PATH": str(busybox_path)}, timeout=30, check=False)
    python = _python_reads(blob)
    assert process.returncode in (0, 1), process.stderr
    # Both readers agree: what bootkiln writes the installer reads, and the installer takes nothing the
    # schema refuses.
    assert (process.returncode == 0) == (python is not None), process.stderr
    if process.returncode == 1:
        assert process.stderr.count(b"\n") == 1 and process.stderr.endswith(b"\n"), process.stderr
        assert list(out.iterdir()) == []
        return
    layout = [line.split(" ") for line in (out / "layout").read_text().splitlines()]
    assert all(len(fields) == 5 for fields in layout), layout
    _assert_plain_layout([fields[4] for fields in layout])
