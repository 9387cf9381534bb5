"""What each Invoke task does, as plain functions: tasks.py stays a thin list of one-liners.

Each function returns a process exit code. Errors are reported once, with their fault and a hint.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from bootkiln.commands.guard import guarded
from bootkiln.console import Reporter
from bootkiln.core.cache import StageCache
from bootkiln.errors import BootkilnError, Fault, InputError
from bootkiln.paths import Workspace
from bootkiln.profile.loader import available_profiles, load_profile

if TYPE_CHECKING:
    from bootkiln.pipeline import Build


class ReproducibilityError(BootkilnError):
    fault = Fault.INTERNAL


def rootfs(profile_ref: str | None) -> int:
    def action(reporter: Reporter) -> None:
        from bootkiln.pipeline import Build

        build = Build(load_profile(profile_ref), reporter=reporter)
        result = build.rootfs()
        out = build.workspace.output_dir(build.profile.name)
        digest = result.metadata["sha256"]["rootfs.tar"]
        reporter.info(f"rootfs: {out / 'rootfs.tar'}\n  sha256 {digest}\n  {result.metadata['packages']} "
                      f"packages listed in {out / 'packages.tsv'}")
        reporter.summary()

    return guarded(action)


def _on_cluster(build: Build, targets: tuple[str, ...], scheduler: str | None) -> None:
    """With a scheduler (--scheduler, BOOTKILN_SCHEDULER or cluster.scheduler), run the stages on its workers."""
    from bootkiln.scale.cluster import build_on_cluster, scheduler_address

    address = scheduler_address(scheduler, build.profile)
    if address is not None:
        build_on_cluster([build], targets, address, build.reporter)


def build(profile_ref: str | None, stages: list[str], jobs: int | None = None, scheduler: str | None = None) -> int:
    def action(reporter: Reporter) -> None:
        from bootkiln.pipeline import DEFAULT_TARGETS, STAGES, Build

        unknown = [name for name in stages if name not in STAGES]
        if unknown:
            raise InputError(f"unknown stage(s): {', '.join(unknown)}", hint=f"stages: {', '.join(STAGES)}")
        build = Build(load_profile(profile_ref), reporter=reporter, jobs=jobs)
        _on_cluster(build, tuple(stages) or DEFAULT_TARGETS, scheduler)
        build.run_stages(tuple(stages) or DEFAULT_TARGETS)  # one graph: independent targets build at once
        out = build.publish()
        reporter.info(f"artifacts in {out}:")
        reporter.info((out / "SHA256SUMS").read_text().rstrip())
        reporter.summary()

    return guarded(action)


def build_matrix(profile_refs: list[str], targets: list[str], architectures: list[str], jobs: int | None,
                 scheduler: str | None, workers: int = 0) -> int:
    def action(reporter: Reporter) -> None:
        from bootkiln.pipeline import STAGES
        from bootkiln.scale.cluster import scheduler_address
        from bootkiln.scale.matrix import build_matrix as run_matrix
        from bootkiln.scale.matrix import with_architecture

        unknown = [name for name in targets if name not in STAGES]
        if unknown:
            raise InputError(f"unknown stage(s): {', '.join(unknown)}", hint=f"stages: {', '.join(STAGES)}")
        profiles = [load_profile(ref) for ref in profile_refs] or [load_profile(None)]
        if architectures:
            profiles = [with_architecture(profile, arch) for profile in profiles for arch in architectures]
        names = [profile.name for profile in profiles]
        if len(set(names)) != len(names):
            raise InputError(f"the matrix names one output folder twice: {', '.join(names)}",
                             hint="give each --profile once")
        address = scheduler_address(scheduler, profiles[0])
        if workers and address:
            raise InputError("--workers starts a cluster on this machine; --scheduler names one elsewhere",
                             hint="give one of the two")
        run_matrix(profiles, tuple(targets) or ("iso",), reporter, address, jobs, workers)

    return guarded(action)


def worker(scheduler: str | None, threads: int, name: str | None) -> int:
    def action(reporter: Reporter) -> None:
        from bootkiln.core.engine import connect
        from bootkiln.core.runner import Host, Runner
        from bootkiln.scale.cluster import scheduler_address
        from bootkiln.scale.worker import worker_argv

        address = scheduler_address(scheduler, None)
        if address is None:
            raise InputError("no scheduler to serve", hint="pass --scheduler tcp://HOST:8786 or set BOOTKILN_SCHEDULER")
        engine = connect(reporter.warn)
        argv = worker_argv(address, engine.architecture(), threads, name)
        reporter.info(f"starting a Dask worker for {address}: {' '.join(argv[3:])}")
        Runner(reporter, engine).run(argv, stage="worker", where=Host(),
                                     hint="the Dask worker stopped; its log is above")

    return guarded(action)


def verify_reproducible(profile_ref: str | None, keep: str | None, builder_arch: str | None = None) -> int:
    def action(reporter: Reporter) -> None:
        from pathlib import Path

        from bootkiln.attest.records import signing_key
        from bootkiln.core.builder import BUILDER_ARCHITECTURES
        from bootkiln.core.engine import connect
        from bootkiln.pipeline import preflight
        from bootkiln.verify.reproduce import report, verify, write_vsa

        profile = load_profile(profile_ref)
        preflight(profile)
        signing_key(profile)  # a bad key is reported now, not after two builds
        other, own = (builder_arch or "").strip() or None, ""
        if other is not None:
            if other not in BUILDER_ARCHITECTURES:
                raise InputError(f"--builder-arch {other!r} is not a builder architecture bootkiln supports",
                                 hint=f"use one of: {', '.join(BUILDER_ARCHITECTURES)}")
            own = connect(reporter.warn).architecture()
            if other == own:
                raise InputError(f"--builder-arch {other} is the Docker engine's own architecture: both builds "
                                 "would use the same builder",
                                 hint="name the other architecture (the second build's builder runs under qemu-user)")
        checks = verify(profile, profile_ref, reporter, scratch=Path(keep).resolve() if keep else None,
                        builder_arch=other)
        report(checks, reporter)
        write_vsa(profile, checks, Workspace.default().output_dir(profile.name), reporter, builder_arch=other)
        different = [check.name for check in checks if not check.matches]
        if different:
            raise ReproducibilityError(f"not reproducible: {', '.join(different)} differ between the two builds",
                                       hint="the differences are listed above; fix their source, not the output")
        builders = f" and their {own} and {other} builders" if other else ""
        alike = [check.name for check in checks if check.expected != check.actual]
        records = f"; {', '.join(alike)} describe the same artifacts" if alike else ""
        reporter.info(f"reproducible: {len(checks) - len(alike)} artifacts identical across both builds{builders}"
                      f"{records}")

    return guarded(action)


def rebuild(manifest: str, key: str | None = None) -> int:
    def action(reporter: Reporter) -> None:
        from pathlib import Path

        from bootkiln.verify.reproduce import rebuild as rebuild_manifest
        from bootkiln.verify.reproduce import report

        checks = rebuild_manifest(Path(manifest), reporter, Path(key).expanduser() if key else None)
        report(checks, reporter)
        different = [check.name for check in checks if not check.matches]
        if different:
            raise ReproducibilityError(f"rebuild differs from {manifest}: {', '.join(different)}",
                                       hint="run `invoke verify-reproducible` to see where builds diverge")
        reporter.info(f"rebuild matches {manifest}: {len(checks)} artifacts identical")

    return guarded(action)


def build_iso(profile_ref: str | None, jobs: int | None = None, scheduler: str | None = None) -> int:
    def action(reporter: Reporter) -> None:
        from bootkiln.pipeline import Build

        build = Build(load_profile(profile_ref), reporter=reporter, jobs=jobs)
        _on_cluster(build, ("iso",), scheduler)
        result = build.iso()
        iso = build.workspace.output_dir(build.profile.name) / "boot.iso"
        size = result.metadata["bytes"]
        reporter.info(f"ISO: {iso}\n  size {size:,} bytes ({size / 1048576:.2f} MiB)\n"
                      f"  sha256 {result.metadata['sha256']['boot.iso']}\n  manifest {iso.parent / 'manifest.json'}")
        reporter.summary()

    return guarded(action)


def build_disk(profile_ref: str | None) -> int:
    def action(reporter: Reporter) -> None:
        from bootkiln.pipeline import Build

        build = Build(load_profile(profile_ref), reporter=reporter)
        result = build.disk()
        image = build.workspace.output_dir(build.profile.name) / "disk.img"
        reporter.info(f"disk image: {image}\n  size {result.metadata['bytes'] >> 20} MiB, "
                      f"{result.metadata['allocated_bytes'] >> 20} MiB allocated (sparse)\n"
                      f"  sha256 {result.metadata['sha256']['disk.img']}\n  root fs UUID "
                      f"{result.metadata['ids']['root_fs_uuid']}")
        reporter.summary()

    return guarded(action)


def nfsroot(profile_ref: str | None, source: str | None) -> int:
    def action(reporter: Reporter) -> None:
        from bootkiln.pipeline import Build

        profile = load_profile(profile_ref)
        if source:
            profile = profile.model_copy(update={"nfsroot": profile.nfsroot.model_copy(update={"source": source})})
        build = Build(profile, reporter=reporter)
        result = build.produce("nfsroot")
        out = build.workspace.output_dir(profile.name)
        reporter.info(f"client tree: {out / 'nfsroot.tar'} ({result.metadata['var_entries']} /var entries recorded)\n"
                      f"  exports: {out / 'ganesha-exports.conf'} (NFS-Ganesha), {out / 'exports'} (kernel nfsd)\n"
                      f"  serve it at {result.metadata['nfsroot']}")
        reporter.summary()

    return guarded(action)


def boot_test(profile_ref: str | None, modes: list[str]) -> int:
    def action(reporter: Reporter) -> None:
        from bootkiln.pipeline import Build
        from bootkiln.verify.boottest import boot_test as run_boots

        run_boots(Build(load_profile(profile_ref), reporter=reporter), modes)
        reporter.summary()

    return guarded(action)


def test_image(profile_ref: str | None, pytest_args: list[str]) -> int:
    def action(reporter: Reporter) -> None:
        from bootkiln.pipeline import Build
        from bootkiln.verify.imagetest import test_image as run_checks

        build = Build(load_profile(profile_ref), reporter=reporter)
        build.rootfs()
        run_checks(build, pytest_args)
        reporter.summary()

    return guarded(action)


def builder(profile_ref: str | None) -> int:
    def action(reporter: Reporter) -> None:
        from bootkiln.pipeline import Build

        image = Build(load_profile(profile_ref), reporter=reporter).builder
        reporter.info(f"builder image {image.tag} ({image.image_id}), base {image.base}")

    return guarded(action)


def check_profile(profile_ref: str | None) -> int:
    def action(reporter: Reporter) -> None:
        from bootkiln.attest import records
        from bootkiln.attest.keys import keyid
        from bootkiln.core.overlay import plan_overlays
        from bootkiln.pipeline import preflight

        profile = load_profile(profile_ref)
        preflight(profile)
        entries = plan_overlays(profile)
        reporter.info(json.dumps(profile.resolved(), indent=2))
        reporter.info(f"profile {profile.name} is valid ({len(entries)} overlay entries)")
        key = records.signing_key(profile)
        reporter.info(f"builds are signed by key {keyid(key.public_key())}" if key else
                      "builds are NOT signed (no signing key: set [signing] key or BOOTKILN_SIGNING_KEY)")

    return guarded(action)


def profile_keys(check_only: bool) -> int:
    def action(reporter: Reporter) -> None:
        from bootkiln.paths import project_root
        from bootkiln.profile import keytable

        readme = project_root() / "profiles" / "README.md"
        missing = keytable.undocumented()
        if missing:
            raise InputError(f"profile keys without a description: {', '.join(missing)}",
                             hint="give each field a description= in src/bootkiln/profile/ (or the table it uses)")
        if check_only:
            if keytable.updated(readme.read_text(encoding="utf-8")) != readme.read_text(encoding="utf-8"):
                raise InputError(f"the key table in {readme} is out of date", hint="run `invoke profile-keys`")
            reporter.info(f"the key table in {readme} is up to date")
        elif keytable.write(readme):
            reporter.info(f"rewrote the key table in {readme} ({len(keytable.rows())} keys)")
        else:
            reporter.info(f"the key table in {readme} was already up to date")

    return guarded(action)


def list_profiles() -> int:
    def action(reporter: Reporter) -> None:
        reporter.info("default (built-in)")
        for name in available_profiles():
            reporter.info(f"{name} ({load_profile(name).description})")

    return guarded(action)


def clean(engine_too: bool) -> int:
    def action(reporter: Reporter) -> None:
        workspace = Workspace.default()
        StageCache(workspace.cache).clean()
        reporter.info(f"removed the stage cache {workspace.cache}")
        if engine_too:
            from bootkiln.core.engine import connect

            removed = connect(reporter.warn).remove_everything()
            reporter.info(f"removed {removed} bootkiln containers and volumes")

    return guarded(action)
