"""The stage cache: entries appear only when complete, killed builds leave nothing that looks finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bootkiln.core.cache import ENTRY_FILE, StageCache
from bootkiln.errors import InputError

KEY = "0123456789abcdef" * 4
OTHER_KEY = "fedcba9876543210" * 4


def scratch_dirs(cache: StageCache) -> list[Path]:
    folder = cache.root / "tmp"
    return sorted(folder.iterdir()) if folder.exists() else []


def start_child(script: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for_line(child: subprocess.Popen[str], expected: str) -> None:
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    assert line == expected, f"child said {line!r}{child.stdout.read()}"


def test_writer_renames_into_place_only_on_clean_exit(tmp_path: Path) -> None:
    cache = StageCache(tmp_path / "cache")
    with cache.writer("rootfs", KEY, {"note": "hello"}) as scratch:
        assert scratch.parent == cache.root / "tmp"
        (scratch / "rootfs.tar").write_bytes(b"data")
        assert cache.lookup("rootfs", KEY) is None
        assert not cache.entry_path("rootfs", KEY).exists()
    entry = cache.lookup("rootfs", KEY)
    assert entry == tmp_path / "cache" / "stages" / "rootfs" / KEY
    assert (entry / "rootfs.tar").read_bytes() == b"data"
    metadata = cache.metadata(entry)
    assert metadata["stage"] == "rootfs"
    assert metadata["key"] == KEY
    assert metadata["note"] == "hello"
    assert isinstance(metadata["created"], float)
    assert not scratch.exists()
    assert scratch_dirs(cache) == []


def test_entry_files_are_sealed_read_only(tmp_path: Path) -> None:
    cache = StageCache(tmp_path / "cache")
    with cache.writer("rootfs", KEY, {}) as scratch:
        (scratch / "sub").mkdir()
        (scratch / "sub" / "packages.tsv").write_text("a\n")
        (scratch / "tool").write_text("#!/bin/sh\n")
        (scratch / "tool").chmod(0o755)
    entry = cache.lookup("rootfs", KEY)
    assert entry is not None
    for name in ("sub/packages.tsv", "tool", ENTRY_FILE):
        mode = (entry / name).stat().st_mode
        assert mode & 0o222 == 0, f"{name} is writable: {mode:o}"
        assert mode & 0o400, f"{name} is not readable: {mode:o}"
    assert (entry / "tool").stat().st_mode & 0o777 == 0o555


def test_exception_in_writer_leaves_no_entry_and_no_scratch(tmp_path: Path) -> None:
    cache = StageCache(tmp_path / "cache")
    with pytest.raises(RuntimeError, match="stage broke"), cache.writer("rootfs", KEY, {}) as scratch:
        (scratch / "rootfs.tar").write_bytes(b"half")
        raise RuntimeError("stage broke")
    assert cache.lookup("rootfs", KEY) is None
    assert not cache.entry_path("rootfs", KEY).exists()
    assert scratch_dirs(cache) == []


def test_keyboard_interrupt_in_writer_leaves_nothing_either(tmp_path: Path) -> None:
    cache = StageCache(tmp_path / "cache")
    with pytest.raises(KeyboardInterrupt), cache.writer("rootfs", KEY, {}) as scratch:
        (scratch / "rootfs.tar").write_bytes(b"half")
        raise KeyboardInterrupt
    assert cache.lookup("rootfs", KEY) is None
    assert scratch_dirs(cache) == []


def test_lookup_ignores_a_folder_without_entry_json(tmp_path: Path) -> None:
    cache = StageCache(tmp_path / "cache")
    debris = cache.entry_path("rootfs", KEY)
    debris.mkdir(parents=True)
    (debris / "rootfs.tar").write_bytes(b"old")
    assert cache.lookup("rootfs", KEY) is None
    (debris / ENTRY_FILE).mkdir()  # not a file either
    assert cache.lookup("rootfs", KEY) is None


def test_writer_replaces_debris_but_keeps_a_complete_entry(tmp_path: Path) -> None:
    cache = StageCache(tmp_path / "cache")
    debris = cache.entry_path("rootfs", KEY)
    debris.mkdir(parents=True)
    (debris / "stale").write_text("x")
    with cache.writer("rootfs", KEY, {"n": 1}) as scratch:
        (scratch / "out").write_text("first")
    entry = cache.lookup("rootfs", KEY)
    assert entry is not None
    assert not (entry / "stale").exists()
    with cache.writer("rootfs", KEY, {"n": 2}) as scratch:
        (scratch / "out").write_text("second")
    assert (entry / "out").read_text() == "first"
    assert cache.metadata(entry)["n"] == 1
    assert scratch_dirs(cache) == []


def test_next_writer_removes_leftovers_of_its_own_key_only(tmp_path: Path) -> None:
    cache = StageCache(tmp_path / "cache")
    mine = cache.root / "tmp" / f"rootfs-{KEY[:16]}-deadbeef"
    theirs = cache.root / "tmp" / f"rootfs-{OTHER_KEY[:16]}-deadbeef"
    for leftover in (mine, theirs):
        (leftover / "sub").mkdir(parents=True)
        (leftover / "sub" / "big.bin").write_bytes(b"\0" * 1024)
    with cache.writer("rootfs", KEY, {}) as scratch:
        assert not mine.exists()
        assert theirs.exists()
        (scratch / "out").write_text("ok")
    assert cache.lookup("rootfs", KEY) is not None
    assert scratch_dirs(cache) == [theirs]


def test_lock_is_immediate_when_free(tmp_path: Path) -> None:
    cache = StageCache(tmp_path / "cache")
    with cache.lock("rootfs", KEY) as waited:
        assert waited is False
    with cache.lock("rootfs", KEY) as waited:
        assert waited is False


def test_lock_waits_for_another_process(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    hold = 0.4
    child = start_child(f"""
        import time
        from pathlib import Path
        from bootkiln.core.cache import StageCache
        with StageCache(Path({str(root)!r})).lock("rootfs", {KEY!r}):
            print("locked", flush=True)
            time.sleep({hold})
    """)
    try:
        wait_for_line(child, "locked")
        start = time.monotonic()
        with StageCache(root).lock("rootfs", KEY) as waited:
            elapsed = time.monotonic() - start
            assert waited is True
            assert elapsed > hold / 2
        with StageCache(root).lock("rootfs", OTHER_KEY) as waited:
            assert waited is False
        assert child.wait(timeout=10) == 0
    finally:
        child.kill()
        child.wait()


def test_build_killed_mid_write_leaves_no_entry_and_the_next_one_succeeds(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    child = start_child(f"""
        import os
        from pathlib import Path
        from bootkiln.core.cache import StageCache
        with StageCache(Path({str(root)!r})).writer("rootfs", {KEY!r}, {{}}) as scratch:
            with (scratch / "rootfs.tar").open("wb") as handle:
                block = b"x" * (1 << 20)
                handle.write(block)
                handle.flush()
                print("writing", flush=True)
                for _ in range(256):
                    handle.write(block)
                    handle.flush()
                while True:
                    os.pause()
    """)
    try:
        wait_for_line(child, "writing")
        cache = StageCache(root)
        assert cache.lookup("rootfs", KEY) is None
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait()
    assert cache.lookup("rootfs", KEY) is None
    assert not cache.entry_path("rootfs", KEY).exists()
    [leftover] = scratch_dirs(cache)
    assert leftover.name.startswith(f"rootfs-{KEY[:16]}-")
    assert (leftover / "rootfs.tar").stat().st_size >= 1 << 20

    with cache.lock("rootfs", KEY) as waited:
        assert waited is False  # the killed process's lock died with it
        with cache.writer("rootfs", KEY, {"attempt": 2}) as scratch:
            (scratch / "rootfs.tar").write_bytes(b"complete")
    entry = cache.lookup("rootfs", KEY)
    assert entry is not None
    assert (entry / "rootfs.tar").read_bytes() == b"complete"
    assert json.loads((entry / ENTRY_FILE).read_text())["attempt"] == 2
    assert scratch_dirs(cache) == []


# --- clean: only a folder bootkiln made as its cache --------------------------------------------------

def test_a_new_cache_is_tagged_and_clean_removes_it(tmp_path: Path) -> None:
    from bootkiln.core.cache import MARKER_FILE, MARKER_TEXT

    cache = StageCache(tmp_path / "cache")
    with cache.lock("rootfs", KEY), cache.writer("rootfs", KEY, {}) as scratch:
        (scratch / "rootfs.tar").write_bytes(b"tar")
    assert (cache.root / MARKER_FILE).read_text() == MARKER_TEXT
    assert cache.is_ours()
    cache.clean()
    assert not cache.root.exists()
    cache.clean()  # nothing to clean is fine


def test_clean_refuses_a_folder_holding_a_users_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from bootkiln.commands import build as build_commands

    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "thesis.txt").write_text("years of work\n")
    monkeypatch.setenv("BOOTKILN_CACHE", str(folder))
    assert build_commands.clean(False) == 2
    captured = capsys.readouterr()
    assert f"{folder} is not a bootkiln stage cache" in captured.out + captured.err
    assert (folder / "thesis.txt").read_text() == "years of work\n"


def test_a_build_using_a_users_folder_does_not_tag_it(tmp_path: Path) -> None:
    """Tagging a folder with a user's files would make `clean` delete them later."""
    from bootkiln.core.cache import MARKER_FILE

    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "thesis.txt").write_text("years of work\n")
    cache = StageCache(folder)
    with cache.lock("rootfs", KEY):
        pass
    assert not (folder / MARKER_FILE).exists()
    with pytest.raises(InputError, match="not a bootkiln stage cache"):
        cache.clean()
    assert (folder / "thesis.txt").exists()


def test_another_tools_cachedir_tag_is_not_ours(tmp_path: Path) -> None:
    folder = tmp_path / "pip-cache"
    folder.mkdir()
    (folder / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n# pip\n")
    with pytest.raises(InputError, match="not a bootkiln stage cache"):
        StageCache(folder).clean()
    assert (folder / "CACHEDIR.TAG").exists()


def legacy_cache(root: Path) -> Path:
    """A cache made before the tag existed: locks/, stages/<stage>/<key>/, tmp/<stage>-<key16>-<uuid8>/."""
    (root / "stages" / "rootfs" / KEY).mkdir(parents=True)
    (root / "stages" / "rootfs" / KEY / ENTRY_FILE).write_text("{}")
    (root / "stages" / "online-tools" / OTHER_KEY).mkdir(parents=True)
    (root / "locks").mkdir()
    (root / "locks" / f"rootfs-{KEY}.lock").write_text("")
    (root / "tmp" / f"rootfs-{KEY[:16]}-deadbeef").mkdir(parents=True)
    return root


def test_a_cache_made_before_the_tag_is_recognised_by_its_layout(tmp_path: Path) -> None:
    cache = StageCache(legacy_cache(tmp_path / "old"))
    assert cache.is_ours()
    cache.clean()
    assert not cache.root.exists()


def test_a_cache_made_before_the_tag_is_tagged_when_used(tmp_path: Path) -> None:
    from bootkiln.core.cache import MARKER_FILE

    cache = StageCache(legacy_cache(tmp_path / "old"))
    with cache.lock("rootfs", KEY):
        pass
    assert (cache.root / MARKER_FILE).is_file()


@pytest.mark.parametrize("extra", ["notes.txt", "stages/rootfs/notes.txt", "stages/rootfs/not-a-key/",
                                   "locks/passwords", "tmp/photos/", "src/"])
def test_anything_beyond_the_old_layout_is_refused(tmp_path: Path, extra: str) -> None:
    root = legacy_cache(tmp_path / "old")
    path = root / extra.rstrip("/")
    if extra.endswith("/"):
        path.mkdir(parents=True)
    else:
        path.write_text("mine")
    with pytest.raises(InputError, match="not a bootkiln stage cache"):
        StageCache(root).clean()
    assert path.exists()


def test_a_symlinked_part_of_the_old_layout_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "old"
    root.mkdir()
    (root / "stages").symlink_to(elsewhere)
    with pytest.raises(InputError, match="not a bootkiln stage cache"):
        StageCache(root).clean()
