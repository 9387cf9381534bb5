"""The native cpio writer: newc format read back by GNU cpio, determinism and compression; the newc reader."""

from __future__ import annotations

import gzip
import io
import lzma
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from bootkiln.formats.corrupt import CorruptArtifact
from bootkiln.formats.cpio import CpioEntry, compress, iter_newc, with_parents, write_newc

ENTRIES = [
    CpioEntry("bin/busybox", "file", 0o755, b"\x7fELF fake busybox"),
    CpioEntry("bin/sh", "symlink", 0o777, b"/bin/busybox"),
    CpioEntry("dev/console", "chardev", 0o600, rdev=(5, 1)),
    CpioEntry("init", "file", 0o755, b"#!/bin/sh\necho hi\n"),
    CpioEntry("lib/modules/6.1.0/kernel/drivers/block/virtio_blk.ko", "file", 0o644, b"module"),
    CpioEntry("tmp", "dir", 0o1777),
]


def parse_newc(data: bytes) -> list[dict[str, object]]:
    """A minimal independent reader, to check every header field we write."""
    records = []
    offset = 0
    while True:
        assert data[offset:offset + 6] == b"070701"
        fields = [int(data[offset + 6 + 8 * i: offset + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name_start = offset + 110
        name = data[name_start:name_start + namesize - 1].decode()
        data_start = name_start + namesize + (-(110 + namesize) % 4)
        body = data[data_start:data_start + filesize]
        offset = data_start + filesize + (-filesize % 4)
        records.append({"name": name, "ino": fields[0], "mode": fields[1], "uid": fields[2], "gid": fields[3],
                        "nlink": fields[4], "mtime": fields[5], "rdev": (fields[9], fields[10]), "data": body})
        if name == "TRAILER!!!":
            return records


def test_parents_come_first_and_are_added() -> None:
    paths = [entry.path for entry in with_parents(ENTRIES)]
    assert paths.index("lib") < paths.index("lib/modules") < paths.index("lib/modules/6.1.0/kernel")
    assert "lib/modules/6.1.0/kernel/drivers/block" in paths
    for index, path in enumerate(paths):
        parent = path.rpartition("/")[0]
        assert not parent or paths.index(parent) < index


def test_headers_are_fixed_except_what_the_entry_says() -> None:
    records = parse_newc(write_newc(ENTRIES, mtime=1700000000))
    by_name = {record["name"]: record for record in records}
    assert by_name["dev/console"]["mode"] == 0o020600 and by_name["dev/console"]["rdev"] == (5, 1)
    assert by_name["bin/sh"]["mode"] == 0o120777 and by_name["bin/sh"]["data"] == b"/bin/busybox"
    assert by_name["tmp"]["mode"] == 0o041777 and by_name["tmp"]["nlink"] == 2
    assert by_name["init"]["data"] == b"#!/bin/sh\necho hi\n"
    content = [r for r in records if r["name"] != "TRAILER!!!"]
    assert {(r["uid"], r["gid"], r["mtime"]) for r in content} == {(0, 0, 1700000000)}
    assert [r["ino"] for r in content] == list(range(1, len(content) + 1))
    assert len(write_newc(ENTRIES, 1)) % 4 == 0


def test_output_is_independent_of_input_order() -> None:
    assert write_newc(ENTRIES, 5) == write_newc(list(reversed(ENTRIES)), 5)
    assert write_newc(ENTRIES, 5) != write_newc(ENTRIES, 6)


def test_gnu_cpio_reads_it(tmp_path: Path) -> None:
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=write_newc(ENTRIES, 1700000000),
                             capture_output=True, check=True).stdout.decode()
    assert "bin/sh -> /bin/busybox" in listing
    assert "crw-------" in listing and "dev/console" in listing
    assert "drwxrwxrwt" in listing


def test_bad_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="relative"):
        CpioEntry("/abs", "file")
    with pytest.raises(ValueError, match="relative"):
        CpioEntry("a/../../b", "file")
    with pytest.raises(ValueError, match="only files and symlinks"):
        CpioEntry("d", "dir", data=b"x")
    with pytest.raises(ValueError, match="two different entries"):
        with_parents([CpioEntry("x", "file", data=b"1"), CpioEntry("x", "file", data=b"2")])
    with pytest.raises(ValueError, match="is a file"):
        with_parents([CpioEntry("x", "file"), CpioEntry("x/y", "file")])


@pytest.mark.parametrize("method", ["gzip", "xz", "zstd"])
def test_compression_is_deterministic_and_decodes(method: str) -> None:
    raw = write_newc(ENTRIES, 1700000000) * 50
    first = compress(raw, method)  # type: ignore[arg-type]
    assert first == compress(raw, method)  # type: ignore[arg-type]
    def unzstd(blob: bytes) -> bytes:
        return bytes(zstandard.ZstdDecompressor().decompress(blob))

    decoders: dict[str, Callable[[bytes], bytes]] = {"gzip": gzip.decompress, "xz": lzma.decompress,
                                                     "zstd": unzstd}
    assert decoders[method](first) == raw
    if method == "gzip":
        assert first[4:8] == b"\0\0\0\0", "gzip header time must be zero"
    if method == "xz":
        assert first[6:8] == b"\x00\x01", "xz stream flags: CRC32 check, the one the kernel verifies"


def test_the_reader_lists_what_the_writer_wrote() -> None:
    data = write_newc(ENTRIES, 1700000000)
    handle = io.BytesIO(data)
    members = list(iter_newc(handle))
    assert [member.name for member in members] == [entry.path for entry in with_parents(ENTRIES)]
    by_name = {member.name: member for member in members}
    link = by_name["bin/sh"]
    assert link.header is not None and stat.S_ISLNK(link.mode) and link.link_target == "/bin/busybox"
    console = by_name["dev/console"].header
    assert console is not None and (console.rdev_major, console.rdev_minor, console.mtime) == (5, 1, 1700000000)
    init = by_name["init"]
    assert data[init.offset:init.offset + init.size] == b"#!/bin/sh\necho hi\n"


def test_the_reader_follows_concatenated_archives_and_reports_trailing_data() -> None:
    first = write_newc([CpioEntry("init", "file", 0o755, b"one")], 0)
    second = write_newc([CpioEntry("init", "file", 0o755, b"two")], 0)
    members = list(iter_newc(io.BytesIO(first + bytes(512) + second + bytes(8) + b"junk")))
    assert [(member.name, member.archive) for member in members] == [("init", 0), ("init", 1), ("", 1)]
    assert members[-1].header is None and members[-1].size == 4 and stat.S_ISREG(members[-1].mode)


def test_the_reader_refuses_a_member_that_runs_past_the_end() -> None:
    data = write_newc([CpioEntry("init", "file", 0o755, b"x" * 100)], 0)
    with pytest.raises(CorruptArtifact, match="cpio member 'init' runs past the end of the file"):
        list(iter_newc(io.BytesIO(data[:150])))
