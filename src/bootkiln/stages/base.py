"""What every stage shares: its context, its result, and how it is cached."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from bootkiln.console import Reporter
from bootkiln.core.archive import ArchiveState, sources_list
from bootkiln.core.builder import BuilderImage
from bootkiln.core.engine import Upload, files_upload
from bootkiln.core.overlay import plan_overlays
from bootkiln.core.runner import Builder, Runner
from bootkiln.errors import InputError
from bootkiln.hashing import Fingerprint
from bootkiln.paths import project_root
from bootkiln.profile.schema import Profile

# Bump when the layout of cache entries changes, so old entries are never misread.
CACHE_FORMAT = "1"


class StageContext(Protocol):
    """What a stage may use of the build; the builder and archive are made only when first used."""

    @property
    def profile(self) -> Profile: ...

    @property
    def archive(self) -> ArchiveState: ...

    @property
    def builder(self) -> BuilderImage: ...

    @property
    def runner(self) -> Runner: ...

    @property
    def reporter(self) -> Reporter: ...


@dataclass(frozen=True)
class StageResult:
    name: str
    key: str
    entry: Path
    cached: bool
    metadata: dict[str, Any]

    def artifact(self, name: str) -> Path:
        return self.entry / name


Inputs = Mapping[str, StageResult]


class Stage(Protocol):
    """Everything the pipeline asks of a stage."""

    name: str

    def requires_for(self, profile: Profile) -> tuple[str, ...]:
        """The stages whose outputs this one consumes, for this profile."""
        ...

    def outputs_for(self, profile: Profile) -> tuple[str, ...]:
        """The files this stage leaves in its cache entry, for this profile."""
        ...

    def check(self, profile: Profile) -> None:
        """Raise InputError for what this stage cannot build; runs in preflight, before Docker or the network."""
        ...

    def key(self, ctx: StageContext, inputs: Inputs) -> str: ...

    def build(self, ctx: StageContext, inputs: Inputs, scratch: Path) -> dict[str, Any]: ...


class StageBase:
    """Defaults for a stage: the same inputs and outputs for every profile, and nothing to check beyond the
    profile schema."""

    name: str
    requires: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()

    def requires_for(self, profile: Profile) -> tuple[str, ...]:
        return self.requires

    def outputs_for(self, profile: Profile) -> tuple[str, ...]:
        return self.outputs

    def check(self, profile: Profile) -> None:
        return None


def require_initramfs_stage(profile: Profile, key: str, stage: str) -> None:
    """The initramfs /init can only run a stage script that one of the profile's initramfs overlays holds."""
    script = f"/lib/bootkiln/stages/{stage}"
    if script not in {entry.path for entry in plan_overlays(profile, "initramfs")}:
        raise InputError(f"{profile.where}: key '{key}': no {script} in the "
                         f"initramfs overlays {profile.initramfs.overlays}",
                         hint="add the stage script to an initramfs overlay, or pick an existing stage")


def base_fingerprint(stage: Stage, inputs: Inputs) -> Fingerprint:
    """Every key starts with the cache format, the stage's name and the keys of what it consumes."""
    fingerprint = Fingerprint(stage.name).add_text("format", CACHE_FORMAT)
    for name in sorted(inputs):
        fingerprint.add_text(f"input:{name}", inputs[name].key)
    return fingerprint


def code_files(*modules: str) -> list[Path]:
    """Source files of bootkiln modules whose code shapes a host-side stage's output."""
    package = Path(__file__).resolve().parents[1]
    return [package / f"{module.replace('.', '/')}.py" for module in modules]


def script_path(name: str) -> Path:
    return project_root() / "scripts" / name


def archive_env(ctx: StageContext) -> dict[str, str]:
    """The profile's archive state, for scripts that talk to it (scripts/lib/archive-apt.sh)."""
    debian = ctx.profile.debian
    return {
        "SOURCE_DATE_EPOCH": str(ctx.archive.source_date_epoch),
        "BK_SUITE": debian.suite,
        "BK_ARCH": debian.architecture,
        # Scripts compare the two: equal means native tools, different means cross tools or qemu-user.
        "BK_BUILDER_ARCH": ctx.builder.architecture,
        "BK_SNAPSHOT": debian.snapshot or "",
    }


def scripts_upload(ctx: StageContext, script: str, extra: dict[str, tuple[bytes, int]] | None = None,
                   extra_apt_lines: Sequence[str] = ()) -> Upload:
    """The stage's script, the shared script library, the archive's sources lists and any extra files."""
    components = ctx.profile.debian.components
    files = {
        script: (script_path(script).read_bytes(), 0o755),
        "apt/sources.list": (sources_list(ctx.archive, components, extra_lines=extra_apt_lines).encode(), 0o644),
        "apt/sources-src.list": (sources_list(ctx.archive, components, source_packages=True,
                                              extra_lines=extra_apt_lines).encode(), 0o644),
    }
    for library in sorted((script_path("lib")).glob("*.sh")):
        files[f"lib/{library.name}"] = (library.read_bytes(), 0o644)
    return files_upload({**files, **(extra or {})})


def fetch_then_make(ctx: StageContext, stage: str, script: str, scratch: Path, *, env: Mapping[str, str],
                    uploads: Sequence[Upload], fetch: Sequence[str], fetch_hint: str, make: Sequence[str],
                    make_hint: str = "") -> None:
    """Run the stage's script twice in one builder volume: `fetch` with the network (it downloads
    and checks), then `make` without it, collecting /work/out into scratch: what the outputs are made
    from is fixed before they are made."""
    engine = ctx.runner.engine
    assert engine is not None
    command = "/bootkiln/" + script
    with engine.volume(stage) as volume:
        online = Builder(image=ctx.builder.tag, network="host", volumes={volume: "/work"}, env=env, uploads=uploads)
        ctx.runner.run([command, *fetch], stage=stage, where=online, hint=fetch_hint)
        ctx.runner.run([command, *make], stage=stage, where=replace(online, network="none",
                                                                    collect=[("/work/out", scratch)]), hint=make_hint)


def add_scripts(fingerprint: Fingerprint, script: str) -> Fingerprint:
    fingerprint.add_file("script", script_path(script))
    for library in sorted(script_path("lib").glob("*.sh")):
        fingerprint.add_file(f"lib/{library.name}", library)
    return fingerprint
