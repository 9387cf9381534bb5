"""`invoke test-image`: testinfra checks run against the built root filesystem itself.

The rootfs tarball is imported as a Docker image and started as an idle container with no
network; pytest-testinfra's docker backend then runs each check inside it. The checks are in
tests/image/ plus the files the profile lists under `checks.paths`; the fixtures they share come
from the bootkiln.verify.testinfra_plugin pytest plugin and describe what the profile promised.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from xml.etree import ElementTree

import docker.errors

from bootkiln.core.overlay import plan_overlays
from bootkiln.core.runner import Host, Runner
from bootkiln.errors import CommandFailed, ImageChecksFailed
from bootkiln.paths import project_root
from bootkiln.pipeline import Build
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
        run_checks(build.runner, argv, Path(scratch))


# pytest's exit status when it ran the checks and some failed (2: interrupted or not collected, 3: its
# own error, 4: bad arguments, 5: no checks found).
PYTEST_CHECKS_FAILED = 1


def run_checks(runner: Runner, argv: list[str], scratch: Path) -> None:
    """Run pytest on the checks; failing checks are the image's fault (exit 4), not the environment's."""
    report = scratch / "checks.xml"
    try:
        # xunit1 records each check's file, relative to the rootdir.
        runner.run([*argv, f"--rootdir={project_root()}", f"--junitxml={report}", "-o", "junit_family=xunit1"],
                   stage="test-image",
                   where=Host(cwd=project_root(), passthrough=True),
                   hint="pytest could not run the checks; its output is above")
    except CommandFailed as exc:
        if exc.status != PYTEST_CHECKS_FAILED:
            raise
        raise ImageChecksFailed(failed_checks(report),
                                hint="the image does not match its profile or its checks; each check's "
                                     "output is above") from None


def _shown_path(file: str | None) -> str:
    """pytest names files relative to its rootdir (the project); a profile's checks may lie elsewhere."""
    if not file:
        return ""
    path = (project_root() / file).resolve()
    return str(path.relative_to(project_root())) if path.is_relative_to(project_root()) else str(path)


def failed_checks(report: Path) -> list[str]:
    """The checks that failed or errored, as pytest node-like names, from pytest's JUnit XML report."""
    try:
        # Our own pytest run wrote this file a moment ago.
        root = ElementTree.parse(report).getroot()  # noqa: S314
    except (OSError, ElementTree.ParseError):
        return []
    failed = []
    for case in root.iter("testcase"):
        if case.find("failure") is None and case.find("error") is None:
            continue
        # Every check runs against the one container: its name says nothing about the check.
        name = re.sub(r"\[docker://[^\]]*\]$", "", case.get("name", ""))
        classname = case.get("classname", "")
        test_class = classname.rsplit(".", 1)[-1] if "." in classname else ""
        location = _shown_path(case.get("file")) or classname
        failed.append("::".join(part for part in (location, test_class if test_class[:1].isupper() else "", name)
                                if part))
    return failed
