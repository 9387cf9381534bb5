"""The builder image: a Debian container with the tools every stage runs.

Its base is either a pinned Debian image (pulled, or already loaded) or one bootkiln makes itself
with mmdebstrap and `docker import`, for engines that reach no registry. The image is tagged with a
hash of its inputs, so it is rebuilt only when the Dockerfile, its folder or the base change.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors

from bootkiln.archive import ArchiveState, sources_list
from bootkiln.config import BuilderSettings
from bootkiln.console import Reporter
from bootkiln.engine import LABEL, Engine, split_lines
from bootkiln.errors import CommandFailed, EnvironmentProblem
from bootkiln.hashing import Fingerprint
from bootkiln.paths import project_root
from bootkiln.runner import Host, Runner

BASE_REPO = "bootkiln-base"
BUILDER_REPO = "bootkiln-builder"


@dataclass(frozen=True)
class BuilderImage:
    tag: str
    image_id: str
    base: str
    base_recipe: dict[str, Any]

    def identity(self) -> dict[str, Any]:
        return {"tag": self.tag, "image_id": self.image_id, "base": self.base, "base_recipe": self.base_recipe}


@dataclass
class BuilderFactory:
    engine: Engine
    runner: Runner
    reporter: Reporter

    def ensure(self, settings: BuilderSettings, archive: ArchiveState) -> tuple[BuilderImage, bool]:
        """The builder image for these settings, and whether it had to be built now."""
        base, recipe = self._base(settings, archive)
        docker_dir = project_root() / "docker"
        sources = sources_list(archive, ["main"])
        key = (Fingerprint("builder").add_tree("docker", docker_dir).add_json("base", recipe)
               .add_text("sources", sources).hexdigest())
        tag = f"{BUILDER_REPO}:{key[:20]}"
        image = self._local(tag)
        built = image is None
        if image is None:
            self._build(docker_dir, tag, base, archive, sources)
            image = self._local(tag)
            if image is None:
                raise EnvironmentProblem(f"docker build reported success but {tag} is missing")
        return BuilderImage(tag=tag, image_id=image.id, base=base, base_recipe=recipe), built

    # --- base image ---------------------------------------------------------------------------
    def _base(self, settings: BuilderSettings, archive: ArchiveState) -> tuple[str, dict[str, Any]]:
        problems: list[str] = []
        if settings.base in ("auto", "image"):
            found = self._local(settings.image)
            if found is not None:
                return settings.image, {"image": settings.image, "id": found.id}
        if settings.base in ("auto", "mmdebstrap"):
            if shutil.which("mmdebstrap"):
                return self._mmdebstrap_base(settings, archive)
            problems.append("mmdebstrap is not installed on this host (apt-get install mmdebstrap)")
        if settings.base in ("auto", "image"):
            try:
                self.reporter.info(f"pulling builder base {settings.image}")
                pulled = self.engine.client.images.pull(settings.image)
                return settings.image, {"image": settings.image, "id": pulled.id}
            except docker.errors.APIError as exc:
                problems.append(f"pulling {settings.image} failed: {str(exc).splitlines()[0][:200]}")
        raise EnvironmentProblem(
            "no builder base image could be made: " + "; ".join(problems),
            hint="install mmdebstrap on this host, or `docker load` / make pullable the image in the "
            "profile's builder.image, or set builder.base to choose the method",
        )

    def _mmdebstrap_base(self, settings: BuilderSettings, archive: ArchiveState) -> tuple[str, dict[str, Any]]:
        recipe = {"tool": "mmdebstrap", "variant": "minbase", "suite": settings.suite,
                  "archive": archive.identity()}
        tag = f"{BASE_REPO}:{Fingerprint('base').add_json('recipe', recipe).hexdigest()[:20]}"
        if self._local(tag) is None:
            with tempfile.TemporaryDirectory(prefix="bootkiln-base-") as scratch:
                tarball = Path(scratch) / "base.tar"
                argv = ["mmdebstrap", "--variant=minbase", "--aptopt=Acquire::Retries \"3\"",
                        *(["--aptopt=Acquire::Check-Valid-Until \"false\""] if archive.snapshot else []),
                        settings.suite, str(tarball), archive.mirror]
                env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SOURCE_DATE_EPOCH": str(archive.source_date_epoch),
                       "LC_ALL": "C.UTF-8", "TZ": "UTC"}
                self.runner.run(argv, stage="base", where=Host(env=env),
                                hint="mmdebstrap makes the builder's Debian base; check the mirror and disk space",
                                missing_hint="apt-get install mmdebstrap")
                repository, _, version = tag.partition(":")
                self.engine.client.api.import_image_from_file(str(tarball), repository=repository, tag=version)
        return tag, recipe

    # --- builder image ------------------------------------------------------------------------
    def _build(self, docker_dir: Path, tag: str, base: str, archive: ArchiveState, sources: str) -> None:
        tail: list[str] = []
        buildargs = {"BASE": base, "SOURCE_DATE_EPOCH": str(archive.source_date_epoch), "BOOTKILN_SOURCES": sources}
        stream = self.engine.client.api.build(
            path=str(docker_dir), tag=tag, buildargs=buildargs,
            network_mode="host", rm=True, forcerm=True, pull=False, decode=True, labels={LABEL: "1"},
        )
        for event in stream:
            if "error" in event:
                raise CommandFailed(stage="builder", where="docker build", argv=["docker", "build", "-t", tag,
                                    "--build-arg", f"BASE={base}", "--network", "host", str(docker_dir)],
                                    status=1, tail=[*tail[-20:], str(event["error"]).strip()],
                                    hint="the builder Dockerfile failed; check docker/Dockerfile and the mirror")
            for line in split_lines([str(event.get("stream", "")).encode()]):
                if line.strip():
                    tail.append(line)
                    self.reporter.line("builder", line)

    def _local(self, reference: str) -> Any:
        try:
            return self.engine.client.images.get(reference)
        except docker.errors.ImageNotFound:
            return None
