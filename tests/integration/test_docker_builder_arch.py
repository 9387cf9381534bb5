"""Builder-architecture independence, proven: a profile built by this host's amd64 builder and by an
arm64 builder run under qemu-user (standing in for an Apple Silicon or Graviton host) gives the same
bytes for every artifact: the arm64 rescue profile (native on the arm64 builder) and the default
amd64 profile (whose boot loaders, busybox and rootfs are foreign to the arm64 builder).

The SBOMs and the provenance list each build's own builder packages, so they are compared by the
artifacts they describe. Slow tier: the arm64 builder is assembled, and busybox compiled, under
emulation (15 to 20 min a profile on 2 cores); docs/benchmarks.md records its figures and both builds' sha256s.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.fixtures import invoke


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["rescue-arm64", "default"])
def test_an_emulated_arm64_builder_reproduces_the_amd64_builders_artifacts(profile: str, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    keep = tmp_path / "verify"
    result = invoke(["verify-reproducible", "--profile", profile, "--builder-arch", "arm64",
                     "--keep", str(keep)], timeout=5400)
    assert result.returncode == 0, result.output[-6000:]
    assert "identical across both builds and their amd64 and arm64 builders" in result.output
    first, second = (keep / f"out-{label}" / profile for label in ("first", "second"))
    builders = [json.loads((out / "manifest.json").read_text())["architectures"] for out in (first, second)]
    assert (builders[0]["builder"], builders[0]["builder_runs"]) == ("amd64", "native")
    assert builders[1]["builder"] == "arm64" and builders[1]["builder_runs"].startswith("qemu-user via binfmt_misc")
    if profile == "default":  # amd64 on the arm64 builder: foreign to it, run natively by this host's kernel
        assert builders[1]["foreign_binaries"]["method"] == "cross+qemu-user"
        assert "native amd64" in builders[1]["foreign_binaries"]["stages"]["rootfs"]
        assert builders[0]["foreign_binaries"]["method"] == "none"
    else:
        assert builders[1]["foreign_binaries"]["method"] == "none", "the arm64 builder ran the arm64 target natively"
    records = ("sbom.spdx.json", "sbom.cdx.json", "provenance.intoto.json", "provenance.dsse.json")
    sums, other = ([line for line in (out / "SHA256SUMS").read_text().splitlines() if not line.endswith(records)]
                   for out in (first, second))
    assert sums == other and any(line.endswith("  disk.img") for line in sums)
    timings = [line.strip() for line in result.output.splitlines() if re.search(r"build (first|second)\b.* in ", line)]
    with capsys.disabled():
        print(f"\n  builder independence ({profile}), identical sha256s from the amd64 and arm64 builders:")
        for line in [*sums, *timings]:
            print(f"    {line}")
