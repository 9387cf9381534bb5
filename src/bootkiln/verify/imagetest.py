"""`invoke test-image`: testinfra checks run against the built root filesystem itself.

The rootfs tarball is imported as a Docker image and started as an idle container with no
network; pytest-testinfra's docker backend then runs each check inside it. The checks are in
tests/image/ plus the files the profile lists under `checks.paths`; the fixtures they share come
from the bootkiln.verify.testinfra_plugin pytest plugin and describe what the profile promised.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import docker.errors

from bootkiln.core.overlay import plan_overlays
from bootkiln.core.pipeline import Build
from bootkiln.core.runner import Host
from bootkiln.paths import project_root
from bootkiln.profile.loader import check_paths

ROOTFS_REPO = "bootkiln-rootfs"


def rootfs_image(build: Build) -> str:
    """Import the rootfs tarball as an image (once per cache key) and return its reference."""
    result = build.results["rootfs"]
    reference = f"{ROOTFS_REPO}:{result.key[:20]}"
    try:
        build.engine.client.images.get(reference)
    except docker.errors.ImageNotFound:
        build.reporter.info(f"importing the rootfs as {reference}")
        build.engine.client.api.import_image_from_file(
            str(result.artifact("rootfs.tar")), repository=ROOTFS_REPO, tag=result.key[:20]
        )
    return reference


def image_spec(build: Build) -> dict[str, object]:
    profile = build.profile
    return {
        "profile": profile.resolved(),
        "source_date_epoch": build.archive.source_date_epoch,
        "overlay": [entry.as_json() for entry in plan_overlays(profile)],
        "packages_file": str(build.results["rootfs"].artifact("packages.tsv")),
    }


def test_image(build: Build, pytest_args: list[str]) -> None:
    reference = rootfs_image(build)
    extra = [str(path) for path in check_paths(build.profile)]
    with build.reporter.stage("test-image", reference), build.engine.idle_container(reference) as name, \
            tempfile.TemporaryDirectory(prefix="bootkiln-spec-") as scratch:
        spec = Path(scratch) / "spec.json"
        spec.write_text(json.dumps(image_spec(build), indent=2))
        argv = [sys.executable, "-m", "pytest", "-p", "bootkiln.verify.testinfra_plugin", "-p", "no:cacheprovider",
                f"--hosts=docker://{name}", f"--bootkiln-spec={spec}",
                str(project_root() / "tests" / "image"), *extra, *pytest_args]
        build.runner.run(argv, stage="test-image", where=Host(cwd=project_root(), passthrough=True),
                         hint="the image does not match its profile; the failing checks are listed above")
