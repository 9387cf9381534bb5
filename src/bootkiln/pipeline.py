"""A build: validate the profile, connect to Docker, pin the archive, make the builder, run stages.

Stages whose key is already in the cache are not run at all. Artifacts are published to
out/<profile>/ with SHA256SUMS, a build manifest, SBOMs and provenance (bootkiln.attest).
"""

from __future__ import annotations

import errno
import json
import os
import signal
from functools import cached_property
from pathlib import Path
from typing import Any

from bootkiln import interrupts, parallel
from bootkiln.atomicfile import write_atomic
from bootkiln.attest import cache_signing, records
from bootkiln.attest.archive_index import ArchiveIndex
from bootkiln.attest.packages import BUILDER_QUERY, read_rootfs
from bootkiln.console import Reporter, StageProgress
from bootkiln.core.archive import ArchiveState, resolve_archive
from bootkiln.core.builder import BuilderFactory, BuilderImage, requested_architecture
from bootkiln.core.cache import StageCache
from bootkiln.core.engine import Engine, connect
from bootkiln.core.manifest import merge, new_manifest
from bootkiln.core.remote_cache import RemoteCache, RemoteEntryBad, RemoteFailed, remote_url
from bootkiln.core.runner import Builder as BuilderContainer
from bootkiln.core.runner import Runner
from bootkiln.hashing import sha256_file
from bootkiln.paths import Workspace
from bootkiln.profile.schema import Profile
from bootkiln.stages.base import Inputs, Stage, StageContext, StageResult
from bootkiln.stages.bootloader import BootloaderStage
from bootkiln.stages.busybox import BusyboxStage
from bootkiln.stages.disk import DiskStage
from bootkiln.stages.initramfs import InitramfsStage
from bootkiln.stages.iso import IsoStage
from bootkiln.stages.kernel import KernelStage
from bootkiln.stages.nfsroot import NfsrootStage
from bootkiln.stages.onlinetools import OnlineToolsStage
from bootkiln.stages.payload import PayloadStage
from bootkiln.stages.rootfs import RootfsStage
from bootkiln.stages.uki import UkiStage
from bootkiln.stages.ukisign import UkiSignStage

STAGES: dict[str, type[Stage]] = {stage.name: stage for stage in (
    RootfsStage, BusyboxStage, KernelStage, InitramfsStage, BootloaderStage, IsoStage, DiskStage, NfsrootStage,
    PayloadStage, OnlineToolsStage, UkiStage, UkiSignStage)}


# What `invoke build` makes when no stage is named, and what verify-reproducible compares.
DEFAULT_TARGETS = ("rootfs", "iso", "disk")


def stages_for(profile: Profile, targets: tuple[str, ...]) -> list[str]:
    """The targets and every stage they need, for this profile, dependencies first."""
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        for required in STAGES[name]().requires_for(profile):
            visit(required)
        ordered.append(name)

    for target in targets:
        visit(target)
    return ordered


def stage_consumers(profile: Profile) -> dict[str, set[str]]:
    """For each stage, every stage that consumes its output for this profile, directly or not."""
    consumers: dict[str, set[str]] = {}
    for name in STAGES:
        for required in stages_for(profile, (name,)):
            if required != name:
                consumers.setdefault(required, set()).add(name)
    return consumers


def preflight(profile: Profile, targets: tuple[str, ...] = DEFAULT_TARGETS) -> None:
    """Every stage the targets need checks the profile, before Docker or the network is touched."""
    for name in stages_for(profile, targets):
        STAGES[name]().check(profile)


class Build:
    def __init__(self, profile: Profile, *, workspace: Workspace | None = None,
                 reporter: Reporter | None = None, jobs: int | None = None) -> None:
        self.profile = profile
        self.workspace = workspace or Workspace.default()
        self.reporter = reporter or Reporter()
        self.cache = StageCache(self.workspace.cache)
        self.results: dict[str, StageResult] = {}
        self._checked: set[str] = set()
        self.jobs = parallel.jobs_from(override=jobs)
        # Set when a parallel run stops early: stages still running then report an interrupt, not a failure.
        self._stopping: interrupts.Interrupted | None = None
        self.check(DEFAULT_TARGETS)
        # None: the engine's own architecture; BOOTKILN_BUILDER_ARCH, checked before any container.
        self.builder_architecture = requested_architecture()
        # A bad signing key is reported now, not after the build it was to sign.
        self.signing_key = records.signing_key(profile)

    def check(self, targets: tuple[str, ...]) -> None:
        """Run the checks of the stages the targets need that this build has not checked yet."""
        for name in stages_for(self.profile, targets):
            if name not in self._checked:
                STAGES[name]().check(self.profile)
                self._checked.add(name)

    @cached_property
    def remote(self) -> RemoteCache | None:
        """The shared S3 tier of the stage cache (cache.remote / BOOTKILN_CACHE_REMOTE), checked reachable."""
        url = remote_url(self.profile.cache.remote)
        if url is None:
            return None
        remote = RemoteCache(url, sign=cache_signing.signer(self.signing_key),
                             verify=cache_signing.verifier(self.signing_key),
                             require_signed=self.profile.cache.require_signed)
        remote.check()
        self.reporter.info(f"remote stage cache: {url} ({remote.endpoint})")
        return remote

    @cached_property
    def engine(self) -> Engine:
        return connect(self.reporter.warn)

    @cached_property
    def runner(self) -> Runner:
        return Runner(self.reporter, self.engine)

    @cached_property
    def archive(self) -> ArchiveState:
        self.engine  # noqa: B018 - a missing Docker engine is reported before any network access
        state = resolve_archive(self.profile.debian)
        pinned = f"snapshot {state.snapshot}" if state.snapshot else f"Release of {state.mirror}"
        self.reporter.info(f"archive: {state.suite} from {state.mirror}; "
                           f"SOURCE_DATE_EPOCH={state.source_date_epoch} ({pinned})")
        return state

    @cached_property
    def builder(self) -> BuilderImage:
        with self.reporter.stage("builder") as progress:
            factory = BuilderFactory(self.engine, self.runner, self.reporter)
            image, built = factory.ensure(self.profile.builder, self.builder_archive, self.builder_architecture)
            progress.cached = not built
            progress.note = image.tag
        return image

    @cached_property
    def builder_archive(self) -> ArchiveState:
        """The archive state the builder image is made from: the builder suite's, which may not be the profile's."""
        debian = self.profile.debian
        if debian.suite == self.profile.builder.suite:
            return self.archive
        return resolve_archive(debian.model_copy(update={"suite": self.profile.builder.suite}))

    def stage(self, name: str) -> StageResult:
        """The stage's result, running what it requires first; each stage runs at most once per build."""
        if name not in self.results:
            self.run_stages((name,))
        return self.results[name]

    def run_stages(self, targets: tuple[str, ...]) -> None:
        """Run the targets and what they need; stages that do not consume each other run at once."""
        self.check(targets)
        self.remote  # noqa: B018 - an unreachable bucket is named before any stage runs
        order = [name for name in stages_for(self.profile, targets) if name not in self.results]
        tasks, keys = self.plan(order)
        if self.jobs == 1 or all(self.cache.lookup(name, keys[name]) for name in order):
            # Nothing to build, or one at a time asked for: no threads, no scheduler (the warm no-op stays fast).
            done = parallel.run_serially(tasks, list(tasks))
        else:
            done = parallel.run_in_threads(tasks, list(tasks), self.jobs, self.stop)
        for result in done.values():
            self.results[result.name] = result

    def plan(self, order: list[str]) -> tuple[dict[str, parallel.Task], dict[str, str]]:
        """A task per stage, keyed by its cache key, computed here so the builder and archive are resolved
        once, before any stage runs (a key depends only on the keys of what the stage consumes)."""
        keys = {name: result.key for name, result in self.results.items()}
        tasks: dict[str, parallel.Task] = {}
        for name in order:
            stage = STAGES[name]()
            requires = stage.requires_for(self.profile)
            keys[name] = stage.key(self, {required: self.results.get(required) or StageResult(
                required, keys[required], Path(), False, {}) for required in requires})
            pending = tuple(f"{required}-{keys[required]}" for required in requires if required not in self.results)
            known = {required: self.results[required] for required in requires if required in self.results}
            tasks[f"{name}-{keys[name]}"] = parallel.Task(
                f"{name}-{keys[name]}", self._stage_task(stage, keys[name], known), pending)
        return tasks, keys

    def _stage_task(self, stage: Stage, key: str, known: dict[str, StageResult]) -> Any:
        def run(*consumed: StageResult) -> StageResult:
            return self._run_stage(stage, {**known, **{result.name: result for result in consumed}}, key)
        return run

    def stop(self, cause: BaseException) -> None:
        """Stop the stages still running (an interrupt, or another stage failed): remove this build's containers."""
        self._stopping = (cause if isinstance(cause, interrupts.Interrupted)
                          else interrupts.Interrupted(signal.SIGINT))
        try:
            interrupts.run_cleanups()
        except Exception as exc:  # the engine may be what went away; the stages then fail on their own
            self.reporter.warn(f"could not stop the other running stages: {exc}")

    def _run_stage(self, stage: Stage, inputs: Inputs, key: str | None = None) -> StageResult:
        ctx: StageContext = self
        key = key or stage.key(ctx, inputs)
        with self.reporter.stage(stage.name, f"key {key[:12]}") as progress:
            try:
                entry = self._entry(stage, key, inputs, progress)
            except BaseException as exc:
                if self._stopping is not None and not isinstance(exc, KeyboardInterrupt):
                    # Its container was removed because the build is stopping: not a failure of its own.
                    raise interrupts.Interrupted(self._stopping.signum) from exc
                raise
            return StageResult(stage.name, key, entry, progress.cached,
                               json.loads((entry / "stage.json").read_text()))

    def _entry(self, stage: Stage, key: str, inputs: Inputs, progress: StageProgress) -> Path:
        """The stage's cache entry, built now unless it is cached (or another build makes it meanwhile)."""
        ctx: StageContext = self
        entry = self.cache.lookup(stage.name, key)
        if entry is None:
            with self.cache.lock(stage.name, key) as waited:
                if waited:
                    self.reporter.info(f"{stage.name}: waited for another build of the same key")
                entry = self.cache.lookup(stage.name, key) or self._fetch(stage.name, key, progress)
                if entry is None:
                    with self.cache.writer(stage.name, key, {}) as scratch:
                        metadata = stage.build(ctx, inputs, scratch)
                        metadata["sha256"] = {name: sha256_file(scratch / name)
                                              for name in stage.outputs_for(self.profile)}
                        (scratch / "stage.json").write_text(json.dumps(metadata, sort_keys=True))
                    entry = self.cache.lookup(stage.name, key)
                    assert entry is not None, "cache entry vanished right after it was written"
                    self._upload(stage.name, key, entry)
                else:
                    progress.cached = True
        else:
            progress.cached = True
        return entry

    def _fetch(self, stage: str, key: str, progress: StageProgress) -> Path | None:
        """The entry from the remote tier, if it has a good one; a bad one is reported and then rebuilt."""
        if self.remote is None:
            return None
        try:
            entry = self.remote.fetch(stage, key, self.cache)
        except RemoteEntryBad as exc:
            self.reporter.warn(f"{stage}: {exc}; building it here and replacing the remote entry")
            return None
        except RemoteFailed as exc:
            self.reporter.warn(f"{stage}: the remote stage cache failed ({exc}); building it here")
            return None
        if entry is not None:
            progress.cached = True
            progress.note = "from the remote cache"
        return entry

    def _upload(self, stage: str, key: str, entry: Path) -> None:
        if self.remote is None:
            return
        try:
            self.remote.upload(stage, key, entry)
        except RemoteFailed as exc:  # the local entry is good; other machines just build it themselves
            self.reporter.warn(f"{stage}: could not share the result in the remote stage cache ({exc})")

    def produce(self, name: str) -> StageResult:
        """Build a stage (and what it needs), then publish everything built so far to out/<profile>/."""
        result = self.stage(name)
        self.publish()
        return result

    def rootfs(self) -> StageResult:
        return self.produce("rootfs")

    def iso(self) -> StageResult:
        return self.produce("iso")

    def disk(self) -> StageResult:
        return self.produce("disk")

    # --- outputs --------------------------------------------------------------------------------
    def publish(self) -> Path:
        """Expose artifacts in out/<profile>/ with SHA256SUMS and manifest.json, each replaced atomically."""
        out = self.workspace.output_dir(self.profile.name)
        out.mkdir(parents=True, exist_ok=True)
        sums: dict[str, str] = {}
        for result in self.results.values():
            for name, digest in result.metadata["sha256"].items():
                _place(result.artifact(name), out / name)
                sums[name] = digest
        previous_path = out / "manifest.json"
        try:
            previous = json.loads(previous_path.read_text()) if previous_path.exists() else None
        except ValueError:
            previous = None
        manifest = merge(previous, self.manifest(sums))
        artifacts = {name: digest for name, digest in manifest["artifacts"].items() if (out / name).exists()}
        # The manifest is written with the SBOMs and the provenance that covers them all (bootkiln.attest).
        listed = records.publish(out, self._record_sources(out, manifest, artifacts), self.signing_key)
        _write_atomic(out / "SHA256SUMS", "".join(f"{listed[n]}  {n}\n" for n in sorted(listed)))
        self.reporter.info(records.signing_note(self.signing_key))
        return out

    def _record_sources(self, out: Path, manifest: dict[str, Any],
                        artifacts: dict[str, str]) -> records.BuildSources:
        """What the SBOMs are made from; facts read from the builder or the rootfs are cached by content."""
        image_id = self.builder.image_id.removeprefix("sha256:")

        def builder_report() -> list[str]:
            quiet = Runner(Reporter(quiet_output=True), self.engine)
            return quiet.run(["sh", "-c", BUILDER_QUERY], stage="sbom", where=BuilderContainer(image=self.builder.tag),
                             hint="the builder image could not list its packages for the SBOM")

        facts = self.workspace.cache / records.FACTS_FOLDER
        rootfs_details = None
        if "rootfs.tar" in artifacts:
            rootfs_details = records.cached_json(self.workspace.cache, f"rootfs-{artifacts['rootfs.tar']}.json",
                                                 lambda: read_rootfs(out / "rootfs.tar"))
        return records.BuildSources(
            profile=self.profile, manifest=manifest, artifacts=artifacts, consumers=stage_consumers(self.profile),
            builder_report=records.cached_json(self.workspace.cache, f"builder-{image_id}.json", builder_report),
            rootfs_details=rootfs_details,
            archive_index=ArchiveIndex(self.archive, self.profile.debian.components, facts),
            # The builder's sources.list names main only (core/builder.py).
            builder_archive_index=ArchiveIndex(self.builder_archive, ["main"], facts),
            facts_cache=self.workspace.cache)

    def manifest(self, sums: dict[str, str]) -> dict[str, Any]:
        stages = {name: {"key": r.key, **{k: v for k, v in r.metadata.items() if k != "sha256"},
                         "artifacts": r.metadata["sha256"]} for name, r in self.results.items()}
        return new_manifest(self.profile, self.archive.identity(), self.builder.identity(), stages, sums)


def _place(source: Path, destination: Path) -> None:
    temporary = destination.with_name(f".{destination.name}.tmp{os.getpid()}")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        import shutil

        shutil.copyfile(source, temporary)
    temporary.replace(destination)
    # rename(2) does nothing when both names are links to one inode (an unchanged artifact published
    # again), which would leave the temporary name behind.
    temporary.unlink(missing_ok=True)


def _write_atomic(path: Path, text: str) -> None:
    write_atomic(path, text)
