"""Reproducibility as a checked fact: verify-reproducible, and rebuilding from a manifest."""

from __future__ import annotations

import json
from pathlib import Path

from bootkiln.console import Reporter
from bootkiln.core.builder import BuilderFactory
from bootkiln.core.engine import Engine
from bootkiln.core.runner import Runner
from bootkiln.stages.base import StageResult
from tests.fixtures import SessionBuild, invoke


def test_verify_reproducible_passes_on_the_default_profile(default_iso: StageResult, default_rootfs: StageResult,
                                                           session_build: SessionBuild, tmp_path: Path) -> None:
    """Two more builds, in other folders, zones, locales, umasks and hostnames: every artifact identical,
    and identical to this session's own build as well."""
    keep = tmp_path / "verify"
    result = invoke(["verify-reproducible", "--keep", str(keep)])
    assert result.returncode == 0, result.output[-5000:]
    assert "reproducible:" in result.output
    published = (keep / "out-first" / "default" / "SHA256SUMS").read_text().splitlines()
    for line in published:
        assert f"✔ {line.partition('  ')[2]}" in result.output
    session_sums = (session_build.out() / "SHA256SUMS").read_text()
    for name in ("rootfs.tar", "boot.iso", "initrd.img", "busybox", "vmlinuz", "modules.tar", "efiboot.img"):
        line = next(line for line in published if line.endswith(f"  {name}"))
        assert line in session_sums, f"{name} differs from the session's own build"


def test_rebuild_from_the_manifest_alone_matches(default_iso: StageResult, default_rootfs: StageResult,
                                                 session_build: SessionBuild) -> None:
    manifest = session_build.out() / "manifest.json"
    recorded = json.loads(manifest.read_text())
    assert {"rootfs", "iso", "kernel", "busybox"} <= set(recorded["stages"])
    assert all(len(row.split("\t")) == 4 for row in (session_build.out() / "packages.tsv").read_text().splitlines())
    result = invoke(["rebuild", "--manifest", str(manifest)])
    assert result.returncode == 0, result.output[-5000:]
    assert "rebuild matches" in result.output
    for name in recorded["artifacts"]:
        assert f"✔ {name}" in result.output


def test_rebuild_refuses_an_edited_manifest(default_iso: StageResult, session_build: SessionBuild,
                                            tmp_path: Path) -> None:
    data = json.loads((session_build.out() / "manifest.json").read_text())
    data["profile"]["iso"]["cmdline"] += " quiet"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    result = invoke(["rebuild", "--manifest", str(edited)])
    assert result.returncode == 2 and "edited" in result.output, result.output


def test_the_assembled_builder_image_reproduces(session_build: SessionBuild, engine: Engine) -> None:
    """Made again from the same archive state, in another time zone, the builder has the same image ID."""
    first = session_build.build.builder
    assert first.base == "mmdebstrap", "this machine has no pinned base image, so bootkiln assembles its own"
    engine.client.images.remove(first.tag)
    try:
        again, made = BuilderFactory(engine, Runner(Reporter(quiet_output=True)), Reporter()).ensure(
            session_build.build.profile.builder, session_build.build.archive)
    finally:
        if engine.client.images.list(name=first.tag) == []:
            engine.client.images.get(first.image_id).tag(*first.tag.split(":"))
    assert made and again.tag == first.tag
    assert again.image_id == first.image_id
