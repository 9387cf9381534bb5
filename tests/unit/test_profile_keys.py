"""profiles/README.md's key table is generated from the model: it cannot drift from the schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootkiln.profile import keytable

README = Path(__file__).resolve().parents[2] / "profiles" / "README.md"


def test_every_profile_key_has_a_description() -> None:
    assert keytable.undocumented() == []


def test_the_committed_key_table_is_the_generated_one() -> None:
    document = README.read_text(encoding="utf-8")
    assert keytable.updated(document) == document, "profiles/README.md is out of date: run `invoke profile-keys`"


def test_the_table_lists_every_leaf_key_of_the_model() -> None:
    keys = {key for key, _, _ in keytable.rows()}
    assert {"debian.suite", "rootfs.attrs.\"/path\"", "aws.region", "userdata.disk.partitions",
            "installer.payload", "nfsroot.usr", "nfsroot.home"} <= keys
    assert "debian" not in keys and "source" not in keys


def test_a_changed_description_makes_the_table_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    document = README.read_text(encoding="utf-8")
    original = keytable.rows()
    monkeypatch.setattr(keytable, "rows", lambda: [(k, d, m + " (changed)") for k, d, m in original])
    assert keytable.updated(document) != document


def test_a_document_without_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="no generated key table"):
        keytable.updated("# Profiles\n\n| key | default | meaning |\n")
