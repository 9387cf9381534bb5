"""Reproducibility, checked: build twice under different conditions and compare, or rebuild a manifest.

`verify` runs two complete builds from empty caches, one after the other, each in its own copy of
the checkout and with a different time zone, locale, umask and (where permitted) hostname, then
compares every artifact; a difference is shown structurally (bootkiln.verify.diff). With a builder
architecture, the second build's builder is that one, under qemu-user (BOOTKILN_BUILDER_ARCH),
standing in for a host of that architecture. `rebuild`
builds again from a manifest alone and checks each artifact against the recorded sha256.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bootkiln.attest.provenance import ATTESTATION_NAMES
from bootkiln.attest.records import SBOM_NAMES
from bootkiln.console import Reporter
from bootkiln.core.builder import BUILDER_ARCH_VARIABLE
from bootkiln.core.manifest import input_digests, load_manifest
from bootkiln.core.runner import Host, Runner
from bootkiln.errors import EnvironmentProblem, InputError
from bootkiln.paths import Workspace, project_root
from bootkiln.pipeline import DEFAULT_TARGETS
from bootkiln.profile.schema import Profile

# What "every artifact of a profile" means: the stages whose outputs users take away.
COPY_IGNORE = shutil.ignore_patterns(".venv", ".cache", "out", ".git", "__pycache__", ".mypy_cache", ".ruff_cache",
                                     ".pytest_cache", "*.egg-info")


@dataclass(frozen=True)
class Condition:
    """How one of the two builds differs from the other."""

    label: str
    tz: str
    locale: str
    umask: str
    hostname: str
    folder: str
    # The builder's architecture when it is not the engine's own (run under qemu-user).
    builder_arch: str | None = None


CONDITIONS = (
    Condition("first", "UTC", "C.UTF-8", "022", "kiln-a", "a/bootkiln"),
    Condition("second", "Pacific/Chatham", "C", "077", "kiln-b", "b/a longer path/with spaces/bootkiln"),
)


@dataclass(frozen=True)
class ArtifactCheck:
    name: str
    expected: str
    actual: str | None
    details: str = ""
    # A provenance file matches when it attests the same artifacts: it also covers manifest.json, which
    # records the checkout's path, and an ECDSA signature differs every time it is made.
    equivalent: bool = False

    @property
    def matches(self) -> bool:
        return self.expected == self.actual or self.equivalent


def varies_hostname() -> bool:
    return os.geteuid() == 0 and bool(shutil.which("unshare")) and bool(shutil.which("hostname"))


def _build_argv(condition: Condition, profile_ref: str | None, targets: tuple[str, ...]) -> list[str]:
    task = [sys.executable, "-m", "invoke", "build", *(["--profile", profile_ref] if profile_ref else [])]
    for target in targets:
        task += ["--stage", target]
    script = 'umask "$0"; exec "$@"'
    argv = ["sh", "-c", script, condition.umask, *task]
    if varies_hostname():
        # A private UTS namespace gives the build its own hostname without touching the machine's.
        argv = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', condition.hostname, *argv]
    return argv


def _profile_argument(profile_ref: str | None) -> str | None:
    """A profile path must still resolve from inside a copy of the checkout."""
    if profile_ref and (profile_ref.endswith(".toml") or "/" in profile_ref):
        return str(Path(profile_ref).expanduser().resolve())
    return profile_ref


def conditions(builder_arch: str | None = None) -> tuple[Condition, ...]:
    """The two builds' conditions; with `builder_arch`, the second build's builder is that architecture's."""
    first, second = CONDITIONS
    return first, replace(second, builder_arch=builder_arch)


def verify(profile: Profile, profile_ref: str | None, reporter: Reporter,
           targets: tuple[str, ...] = DEFAULT_TARGETS, scratch: Path | None = None,
           builder_arch: str | None = None) -> list[ArtifactCheck]:
    root = project_root()
    runner = Runner(reporter)
    keep = scratch is not None
    base = scratch or Path(tempfile.mkdtemp(prefix="bootkiln-verify-"))
    outputs: list[Path] = []
    try:
        for condition in conditions(builder_arch):
            checkout = base / condition.folder
            shutil.copytree(root, checkout, ignore=COPY_IGNORE, dirs_exist_ok=True)
            out = base / f"out-{condition.label}"
            env = {**os.environ, "BOOTKILN_HOME": str(checkout), "PYTHONPATH": str(checkout / "src"),
                   "BOOTKILN_CACHE": str(base / f"cache-{condition.label}"), "BOOTKILN_OUT": str(out),
                   "TZ": condition.tz, "LC_ALL": condition.locale, "LANG": condition.locale}
            env.pop(BUILDER_ARCH_VARIABLE, None)
            if condition.builder_arch:
                env[BUILDER_ARCH_VARIABLE] = condition.builder_arch
            builder = f" {condition.builder_arch} builder under qemu-user" if condition.builder_arch else ""
            with reporter.stage(f"build {condition.label}",
                                f"TZ={condition.tz} LC_ALL={condition.locale} umask {condition.umask} "
                                f"hostname {condition.hostname}{builder} in {checkout}"):
                runner.run(_build_argv(condition, _profile_argument(profile_ref), targets), stage=condition.label,
                           where=Host(cwd=checkout, env=env),
                           hint="the build itself failed; run it alone with `invoke build` to see why")
            outputs.append(out / profile.name)
            reporter.info(f"{condition.label} build's builder: {builder_of(out / profile.name)}")
        return compare_outputs(outputs[0], outputs[1], builders_differ=builder_arch is not None)
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def builder_of(out: Path) -> str:
    """The builder a build's manifest records: its architecture and how it ran."""
    try:
        recorded = json.loads((out / "manifest.json").read_text())["architectures"]
        return f"{recorded['builder']} ({recorded.get('builder_runs', 'native')})"
    except (OSError, ValueError, KeyError, TypeError):
        return "not recorded (no manifest.json)"


def _recorded(out: Path) -> dict[str, str]:
    sums = {}
    for line in (out / "SHA256SUMS").read_text().splitlines():
        digest, _, name = line.partition("  ")
        sums[name] = digest
    return sums


def compare_outputs(first: Path, second: Path, builders_differ: bool = False) -> list[ArtifactCheck]:
    """Compare two builds' published artifacts, explaining each difference structurally.

    `builders_differ`: the builds had builders of two architectures. Each SBOM then lists its own
    builder's packages (build tools of another architecture), so the SBOMs match when they describe
    the same artifacts, and a provenance when it attests the same artifacts apart from the SBOMs.
    """
    from bootkiln.verify.diff import compare_artifacts, describe

    expected, actual = _recorded(first), _recorded(second)
    records = set(SBOM_NAMES) if builders_differ else set()
    checks = []
    for name in sorted(set(expected) | set(actual)):
        if name not in actual or name not in expected:
            checks.append(ArtifactCheck(name, expected.get(name, "(missing)"), actual.get(name),
                                        f"  only in the {'first' if name in expected else 'second'} build"))
            continue
        details = ""
        if name in ATTESTATION_NAMES:
            same = attested_artifacts(first / name, records) == attested_artifacts(second / name, records)
            details = "" if same else "  the two provenance statements attest different artifacts"
            checks.append(ArtifactCheck(name, expected[name], actual[name], details, equivalent=same))
            continue
        if name in records and expected[name] != actual[name]:
            described = [described_artifacts(out / name, sums) for out, sums in ((first, expected), (second, actual))]
            same = bool(described[0]) and described[0] == described[1]
            details = ("  lists each build's own builder packages; both describe the same artifacts: "
                       f"{', '.join(sorted(described[0]))}" if same else
                       "  the two SBOMs describe different artifacts")
            checks.append(ArtifactCheck(name, expected[name], actual[name], details, equivalent=same))
            continue
        if expected[name] != actual[name]:
            details = describe(compare_artifacts(name, first / name, second / name))
        checks.append(ArtifactCheck(name, expected[name], actual[name], details))
    return checks


def described_artifacts(sbom: Path, sums: dict[str, str]) -> dict[str, str]:
    """The build's artifacts (SHA256SUMS) whose sha256 the SBOM records."""
    text = sbom.read_text()
    return {name: digest for name, digest in sums.items()
            if name not in SBOM_NAMES and name not in ATTESTATION_NAMES and digest in text}


def attested_artifacts(path: Path, ignore: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
    """The artifacts a provenance file attests, without the manifest (which records where it was built)
    and those in `ignore`."""
    from bootkiln.attest.verify import read_statement, subject_digests

    statement, _ = read_statement(path, None)
    return {name: digest for name, digest in subject_digests(statement).items()
            if name != "manifest.json" and name not in ignore}


def write_vsa(profile: Profile, checks: list[ArtifactCheck], out: Path, reporter: Reporter,
              builder_arch: str | None = None) -> Path:
    """The SLSA Verification Summary of a verify run, signed when a signing key is configured."""
    from bootkiln import __version__
    from bootkiln.attest import dsse, vsa
    from bootkiln.attest.provenance import statement_bytes
    from bootkiln.attest.records import signing_key

    key = signing_key(profile)
    varied = [{"label": c.label, "TZ": c.tz, "locale": c.locale, "umask": c.umask,
               "hostname": c.hostname if varies_hostname() else None, "path": c.folder,
               **({"builder_arch": c.builder_arch} if c.builder_arch else {})} for c in conditions(builder_arch)]
    # Records that match without being the same bytes (provenance, and SBOMs across builders) are inputs.
    alike = [c for c in checks if c.name in ATTESTATION_NAMES or (c.equivalent and c.expected != c.actual)]
    reproduced = [vsa.Reproduced(c.name, c.expected, c.matches) for c in checks if c not in alike]
    inputs = {f"first build's {c.name}": c.expected for c in alike}
    payload = statement_bytes(vsa.summary(profile.name, __version__, reproduced, varied, varies_hostname(),
                                          inputs))
    out.mkdir(parents=True, exist_ok=True)
    name, stale = (vsa.SIGNED_NAME, vsa.UNSIGNED_NAME) if key else (vsa.UNSIGNED_NAME, vsa.SIGNED_NAME)
    (out / name).write_bytes(dsse.envelope_bytes(dsse.sign(payload, key)) if key else payload)
    (out / stale).unlink(missing_ok=True)
    reporter.info(f"verification summary: {out / name}" + ("" if key else " (NOT signed: no signing key "
                                                             "configured)"))
    return out / name


def report(checks: list[ArtifactCheck], reporter: Reporter) -> None:
    for check in checks:
        if check.matches:
            reporter.info(f"✔ {check.name:24} {check.expected}")
            if check.expected != check.actual and check.details:
                reporter.info(check.details)
        else:
            reporter.info(f"✘ {check.name:24} {check.expected[:16]}… vs {(check.actual or '(missing)')[:16]}…")
            if check.details:
                reporter.info(check.details)


def profile_from_manifest(data: dict[str, Any], where: Path | str = "manifest") -> Profile:
    """The recorded profile, checked as a profile file is (the seal proves nothing: anyone can recompute it)."""
    from bootkiln.profile.loader import check_references, describe_validation_errors

    recorded = data.get("profile_file")
    source = Path(recorded) if recorded and Path(recorded).is_file() else None
    try:
        profile = Profile.model_validate({**data["profile"], "source": source})
    except ValidationError as exc:
        raise InputError(f"{where}: key 'profile' is not a valid profile\n" + describe_validation_errors(exc),
                         hint="use the manifest exactly as the build wrote it") from None
    check_references(profile)
    return profile


def planned_stages(data: dict[str, Any], profile: Profile, where: Path) -> list[str]:
    """The recorded stages, each one bootkiln knows, which between them produce every recorded artifact."""
    from bootkiln.pipeline import STAGES

    stages = list(data["stages"])
    unknown = sorted(name for name in stages if name not in STAGES)
    if unknown:
        raise InputError(f"{where}: key 'stages': unknown stage {', '.join(repr(n[:40]) for n in unknown[:5])}",
                         hint=f"this bootkiln's stages are: {', '.join(sorted(STAGES))}")
    if not stages:
        raise InputError(f"{where}: key 'stages' is empty: there is nothing to rebuild",
                         hint="use the manifest exactly as the build wrote it")
    produced = {output for name in stages for output in STAGES[name]().outputs_for(profile)}
    strays = sorted(set(data["artifacts"]) - produced)
    if strays:
        raise InputError(f"{where}: key 'artifacts': {', '.join(repr(n[:40]) for n in strays[:5])} is not produced "
                         f"by the recorded stages ({', '.join(stages)})",
                         hint="use the manifest exactly as the build wrote it")
    return stages


def rebuild(manifest_path: Path, reporter: Reporter, key_path: Path | None = None) -> list[ArtifactCheck]:
    """Build what a manifest describes, in a fresh cache, and check each artifact against it.

    Everything in the manifest is checked before anything runs: its structure (load_manifest), its
    profile, its stages and its artifacts; a malformed manifest is the input's fault, never a crash.
    With a key (given, or BOOTKILN_SIGNING_KEY), only a manifest covered by a provenance signed by
    that key is rebuilt; without one, the manifest's plain sha256 seal is all there is, and the
    report says so.
    """
    from bootkiln.attest.keys import configured_key_path, load_public_key
    from bootkiln.attest.verify import verify_manifest
    from bootkiln.pipeline import Build

    key_path = key_path or configured_key_path(None, Path.cwd())
    if key_path is not None:
        verify_manifest(manifest_path, load_public_key(key_path))
        reporter.info(f"{manifest_path}: covered by a provenance signed with the configured key")
    else:
        reporter.info(f"{manifest_path}: nothing is signed (no key configured): the manifest is checked only "
                      "against its own sha256 seal, which anyone who edits it can recompute")
    data = load_manifest(manifest_path)
    profile = profile_from_manifest(data, manifest_path)
    stages = planned_stages(data, profile, manifest_path)
    changed = sorted(label for label, digest in input_digests(profile).items()
                     if data["inputs"].get(label) != digest)
    if changed:
        raise InputError(f"{manifest_path}: this checkout's inputs differ from the manifest's: {', '.join(changed)}",
                         hint=f"check out commit {data['bootkiln']['commit']} to rebuild exactly")
    with tempfile.TemporaryDirectory(prefix="bootkiln-rebuild-") as scratch:
        build = Build(profile, workspace=Workspace(cache=Path(scratch) / "cache", out=Path(scratch) / "out"),
                      reporter=reporter)
        recorded_archive = data["archive"]
        if build.archive.identity() != recorded_archive:
            raise EnvironmentProblem(
                f"the archive has moved on since {manifest_path} was written "
                f"(Release sha256 {recorded_archive.get('release_sha256')} then, {build.archive.release_sha256} now)",
                hint="a manifest rebuilds exactly only from the same archive state: pin debian.snapshot in the profile",
            )
        results = {name: build.stage(name) for name in stages}
        built = {name: digest for result in results.values() for name, digest in result.metadata["sha256"].items()}
        return [ArtifactCheck(name, digest, built.get(name)) for name, digest in sorted(data["artifacts"].items())]
