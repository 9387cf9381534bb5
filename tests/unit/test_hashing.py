"""Fingerprints: order-sensitive, unambiguous, and blind to what git does not keep (mtimes, umask bits)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from bootkiln.hashing import Fingerprint, sha256_file


def make_tree(root: Path) -> Path:
    (root / "etc" / "app").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "etc" / "app" / "conf").write_text("setting = 1\n")
    (root / "bin" / "tool").write_text("#!/bin/sh\necho hi\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "etc" / "app" / "conf").chmod(0o644)
    (root / "etc" / "link").symlink_to("app/conf")
    return root


def tree_digest(root: Path) -> str:
    return Fingerprint("test").add_tree("tree", root).hexdigest()


def test_same_parts_same_digest() -> None:
    first = Fingerprint("k").add_text("a", "1").add_json("j", {"y": 2, "x": [1]}).hexdigest()
    second = Fingerprint("k").add_text("a", "1").add_json("j", {"x": [1], "y": 2}).hexdigest()
    assert first == second
    assert len(first) == 64


def test_order_of_parts_matters() -> None:
    forward = Fingerprint("k").add_text("a", "1").add_text("b", "2").hexdigest()
    backward = Fingerprint("k").add_text("b", "2").add_text("a", "1").hexdigest()
    assert forward != backward


def test_kind_matters() -> None:
    assert Fingerprint("rootfs").hexdigest() != Fingerprint("builder").hexdigest()


def test_labels_and_payloads_cannot_blur() -> None:
    assert Fingerprint("k").add_text("a", "bc").hexdigest() != Fingerprint("k").add_text("ab", "c").hexdigest()
    one_part = Fingerprint("k").add_text("a", "bc").hexdigest()
    assert one_part != Fingerprint("k").add_text("a", "b").add_text("", "c").hexdigest()


def test_add_file_hashes_content(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"one")
    first = Fingerprint("k").add_file("f", path).hexdigest()
    assert first == Fingerprint("k").add_text("f", "one").hexdigest()
    path.write_bytes(b"two")
    assert Fingerprint("k").add_file("f", path).hexdigest() != first


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "big"
    data = os.urandom(3 * (1 << 20) + 17)  # spans several read blocks
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_tree_digest_does_not_depend_on_its_location(tmp_path: Path) -> None:
    assert tree_digest(make_tree(tmp_path / "a")) == tree_digest(make_tree(tmp_path / "b"))


def test_tree_digest_follows_content(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    before = tree_digest(root)
    (root / "etc" / "app" / "conf").write_text("setting = 2\n")
    assert tree_digest(root) != before


def test_tree_digest_follows_the_exec_bit(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    before = tree_digest(root)
    (root / "etc" / "app" / "conf").chmod(0o755)
    assert tree_digest(root) != before
    (root / "etc" / "app" / "conf").chmod(0o644)
    assert tree_digest(root) == before


def test_tree_digest_follows_symlink_targets(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    before = tree_digest(root)
    (root / "etc" / "link").unlink()
    (root / "etc" / "link").symlink_to("../bin/tool")
    assert tree_digest(root) != before


def test_tree_digest_follows_names_and_new_folders(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    before = tree_digest(root)
    (root / "bin" / "tool").rename(root / "bin" / "tool2")
    renamed = tree_digest(root)
    assert renamed != before
    (root / "empty").mkdir()
    assert tree_digest(root) != renamed


def test_tree_digest_ignores_mtimes(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    before = tree_digest(root)
    for path in [root, *root.rglob("*")]:
        os.utime(path, (1_000_000, 1_000_000), follow_symlinks=False)
    assert tree_digest(root) == before


def test_tree_digest_ignores_non_exec_mode_bits(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    before = tree_digest(root)
    (root / "etc" / "app" / "conf").chmod(0o664)
    (root / "bin" / "tool").chmod(0o775)
    (root / "etc").chmod(0o700)
    assert tree_digest(root) == before
