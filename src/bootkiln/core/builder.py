"""The builder image: a Debian container with the tools every stage runs.

Two ways to make it, chosen by `builder.base`:
- `image`: docker/Dockerfile on a pinned Debian image (present locally, or pulled).
- `mmdebstrap`: bootkiln bootstraps Debian with every package in docker/builder-packages.txt on
  this host, with SOURCE_DATE_EPOCH from the archive, and assembles the Docker image itself (a
  docker-archive with a fixed config), so the same archive state gives the same image ID on any
  machine. This works where no registry is reachable.
`auto` uses a local pinned image if there is one, else mmdebstrap if installed, else pulls.
Either way the image is tagged with a hash of its inputs and made only when they change.

The builder is native to the engine's host. BOOTKILN_BUILDER_ARCH asks for another one, run under
qemu-user: how an amd64 machine stands in for an arm64 one (Apple Silicon, Graviton) to prove that
the builder's architecture does not change the artifacts. Such a builder is always assembled with
mmdebstrap (no registry), and a container of the native builder keeps binfmt_misc's handler
registered while the build runs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import docker.errors

from bootkiln.console import Reporter
from bootkiln.core.archive import ArchiveState, sources_list
from bootkiln.core.binfmt import SCRIPT as BINFMT_SCRIPT
from bootkiln.core.binfmt import hold_binfmt
from bootkiln.core.engine import Engine, engine_message, files_upload, split_lines
from bootkiln.core.lease import LABEL
from bootkiln.core.runner import Host, Runner
from bootkiln.errors import CommandFailed, EnvironmentProblem, InputError
from bootkiln.hashing import Fingerprint
from bootkiln.paths import project_root
from bootkiln.profile.schema import BuilderSettings

BUILDER_REPO = "bootkiln-builder"
# The architectures a builder image is made for: docker/builder-packages.txt qualifies the packages
# Debian has on one of them only (`name [amd64]`).
BUILDER_ARCHITECTURES = ("amd64", "arm64")
BUILDER_ARCH_VARIABLE = "BOOTKILN_BUILDER_ARCH"
ASSEMBLY_FORMAT = "1"
BUILDER_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive",
               "LANG=C.UTF-8", "LC_ALL=C.UTF-8", "TZ=UTC"]


@dataclass(frozen=True)
class BuilderImage:
    tag: str
    image_id: str
    base: str
    base_recipe: dict[str, Any]
    # The Debian architecture the builder runs as: native to the engine's host (see Engine.architecture),
    # unless BOOTKILN_BUILDER_ARCH asked for an emulated one.
    architecture: str = "amd64"
    # How the builder's own binaries run: "native", or the qemu-user handler that runs them.
    runs: str = "native"

    def identity(self) -> dict[str, Any]:
        return {"tag": self.tag, "image_id": self.image_id, "base": self.base, "base_recipe": self.base_recipe,
                "architecture": self.architecture, "runs": self.runs}


def builder_packages(architecture: str = "amd64") -> list[str]:
    """docker/builder-packages.txt for a builder of `architecture`: `name [arch ...]` lines only there."""
    path = project_root() / "docker" / "builder-packages.txt"
    packages = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, qualifier = line.partition(" ")
        qualifier = qualifier.strip()
        if qualifier and not (qualifier.startswith("[") and qualifier.endswith("]")):
            raise InputError(f"{path}:{number}: {raw.strip()!r} is not `package` or `package [arch ...]`")
        wanted = qualifier[1:-1].split() if qualifier else BUILDER_ARCHITECTURES
        if architecture in wanted:
            packages.append(name)
    return packages


def requested_architecture(environ: Mapping[str, str] = os.environ) -> str | None:
    """The builder architecture BOOTKILN_BUILDER_ARCH asks for, checked; None for the engine's own."""
    value = environ.get(BUILDER_ARCH_VARIABLE, "").strip()
    if not value:
        return None
    if value not in BUILDER_ARCHITECTURES:
        raise InputError(f"{BUILDER_ARCH_VARIABLE}={value!r} is not a builder architecture bootkiln supports",
                         hint=f"use one of: {', '.join(BUILDER_ARCHITECTURES)}, or unset it for the engine's own")
    return value


def image_config(layer_digest: str, epoch: int, architecture: str = "amd64") -> bytes:
    """The image config for an assembled builder: fixed fields only, so its digest (the image ID) is too."""
    created = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = {
        "architecture": architecture,
        "os": "linux",
        "created": created,
        "config": {"Env": BUILDER_ENV, "Cmd": ["/bin/bash"], "Labels": {LABEL: "1"}},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        "history": [{"created": created, "created_by": "bootkiln: mmdebstrap docker/builder-packages.txt"}],
    }
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def write_docker_archive(layer: Path, destination: Path, tag: str, epoch: int, architecture: str = "amd64") -> str:
    """Wrap a root filesystem tarball as a one-layer `docker load` archive; return the image ID."""
    digest = hashlib.sha256()
    with layer.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    layer_digest = digest.hexdigest()
    config = image_config(layer_digest, epoch, architecture)
    config_digest = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"{config_digest}.json", "RepoTags": [tag],
                            "Layers": [f"{layer_digest}/layer.tar"]}]).encode()
    with tarfile.open(destination, "w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in ((f"{config_digest}.json", config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), epoch
            archive.addfile(info, io.BytesIO(data))
        info = archive.gettarinfo(str(layer), arcname=f"{layer_digest}/layer.tar")
        info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
        with layer.open("rb") as handle:
            archive.addfile(info, handle)
    return f"sha256:{config_digest}"


@dataclass
class BuilderFactory:
    engine: Engine
    runner: Runner
    reporter: Reporter

    def ensure(self, settings: BuilderSettings, archive: ArchiveState,
               architecture: str | None = None) -> tuple[BuilderImage, bool]:
        """The builder image for these settings, and whether it had to be made now.

        `architecture`: a builder other than the engine's own, run under qemu-user (None: native).
        """
        native = self.engine.architecture()  # refuses an engine of any other architecture
        if architecture is not None and architecture != native:
            return self._emulated(settings, archive, native, architecture)
        method, base_id = self._choose(settings)
        if method == "mmdebstrap":
            image, built = self._assembled(settings, archive, native)
        else:
            image, built = self._from_dockerfile(settings, archive, base_id)
        return replace(image, architecture=native), built

    def _emulated(self, settings: BuilderSettings, archive: ArchiveState, native: str,
                  architecture: str) -> tuple[BuilderImage, bool]:
        """A builder of another architecture: assembled on this host with mmdebstrap --arch, run under
        qemu-user through a binfmt_misc handler that a native builder container holds registered."""
        if settings.base == "image":
            raise InputError(f"builder.base = \"image\" cannot make an {architecture} builder on this "
                             f"{native} engine: an emulated builder is assembled with mmdebstrap",
                             hint=f"set builder.base to \"auto\" or \"mmdebstrap\", or unset {BUILDER_ARCH_VARIABLE}")
        if not self.engine.endpoint.is_local:
            raise EnvironmentProblem(
                f"an emulated {architecture} builder needs the Docker engine on this machine (mmdebstrap here and "
                f"the engine's containers share one kernel's binfmt_misc); {self.engine.endpoint.url} is remote",
                hint=f"unset {BUILDER_ARCH_VARIABLE} to use the engine's own builder, or run on the engine's host")
        if not shutil.which("mmdebstrap"):
            raise EnvironmentProblem(f"an emulated {architecture} builder is assembled with mmdebstrap, which this "
                                     "host lacks", hint="apt-get install mmdebstrap qemu-user-static")
        host, _ = self.ensure(settings, archive)
        script = project_root() / "scripts" / BINFMT_SCRIPT
        runs = hold_binfmt(self.engine, image=host.tag, target=architecture,
                           uploads=[files_upload({BINFMT_SCRIPT: (script.read_bytes(), 0o755)})],
                           on_line=lambda line: self.reporter.line("binfmt", line))
        image, built = self._assembled(settings, archive, architecture)
        return replace(image, architecture=architecture, runs=runs), built

    def _choose(self, settings: BuilderSettings) -> tuple[Literal["image", "mmdebstrap"], str]:
        problems: list[str] = []
        if settings.base in ("auto", "image"):
            found = self._local(settings.image)
            if found is not None:
                return "image", str(found.id)
        if settings.base in ("auto", "mmdebstrap"):
            if shutil.which("mmdebstrap"):
                return "mmdebstrap", ""
            problems.append("mmdebstrap is not installed on this host (apt-get install mmdebstrap)")
        if settings.base in ("auto", "image"):
            try:
                self.reporter.info(f"pulling builder base {settings.image}")
                return "image", str(self.engine.client.images.pull(settings.image).id)
            except docker.errors.APIError as exc:
                problems.append(f"pulling {settings.image} failed: {engine_message(exc)}")
        raise EnvironmentProblem(
            "no builder base image could be made: " + "; ".join(problems),
            hint="install mmdebstrap on this host, or `docker load` / make pullable the image in the "
            "profile's builder.image, or set builder.base to choose the method",
        )

    # --- assembled with mmdebstrap ---------------------------------------------------------------
    def _assembled(self, settings: BuilderSettings, archive: ArchiveState,
                   architecture: str) -> tuple[BuilderImage, bool]:
        packages = builder_packages(architecture)
        recipe = {"method": "mmdebstrap", "format": ASSEMBLY_FORMAT, "variant": "minbase", "suite": settings.suite,
                  "archive": archive.identity(), "packages": packages, "env": BUILDER_ENV,
                  "architecture": architecture}
        tag = f"{BUILDER_REPO}:{Fingerprint('builder').add_json('recipe', recipe).hexdigest()[:20]}"
        image = self._local(tag)
        if image is not None:
            return BuilderImage(tag, str(image.id), "mmdebstrap", recipe), False
        with tempfile.TemporaryDirectory(prefix="bootkiln-builder-") as scratch:
            rootfs = Path(scratch) / "rootfs.tar"
            sources = Path(scratch) / "sources.list"
            sources.write_text(sources_list(archive, ["main"]))
            argv = ["mmdebstrap", "--variant=minbase", f"--architectures={architecture}",
                    f"--include={','.join(packages)}",
                    "--aptopt=Acquire::Retries \"5\"", "--aptopt=Acquire::http::Timeout \"30\"",
                    "--customize-hook=rm -f \"$1\"/etc/machine-id && touch \"$1\"/etc/machine-id",
                    settings.suite, str(rootfs), str(sources)]
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SOURCE_DATE_EPOCH": str(archive.source_date_epoch),
                   "LC_ALL": "C.UTF-8", "TZ": "UTC", "HOME": "/root"}
            self.runner.run(argv, stage="builder", where=Host(env=env),
                            hint="mmdebstrap makes the builder image; check the mirror and disk space",
                            missing_hint="apt-get install mmdebstrap")
            bundle = Path(scratch) / "image.tar"
            expected_id = write_docker_archive(rootfs, bundle, tag, archive.source_date_epoch, architecture)
            with bundle.open("rb") as handle:
                for _ in self.engine.client.api.load_image(handle):
                    pass
        image = self._local(tag)
        if image is None or image.id != expected_id:
            raise EnvironmentProblem(f"loading the assembled builder gave {getattr(image, 'id', None)}, "
                                     f"not {expected_id}", hint="is the engine's storage driver content-addressed?")
        return BuilderImage(tag, str(image.id), "mmdebstrap", recipe), True

    # --- from docker/Dockerfile on a pinned image ---------------------------------------------------
    def _from_dockerfile(self, settings: BuilderSettings, archive: ArchiveState,
                         base_id: str) -> tuple[BuilderImage, bool]:
        recipe = {"method": "image", "image": settings.image, "id": base_id}
        docker_dir = project_root() / "docker"
        sources = sources_list(archive, ["main"])
        key = (Fingerprint("builder").add_tree("docker", docker_dir).add_json("base", recipe)
               .add_text("sources", sources).hexdigest())
        tag = f"{BUILDER_REPO}:{key[:20]}"
        image = self._local(tag)
        built = image is None
        if image is None:
            self._build(docker_dir, tag, settings.image, archive, sources)
            image = self._local(tag)
            if image is None:
                raise EnvironmentProblem(f"docker build reported success but {tag} is missing")
        return BuilderImage(tag, str(image.id), settings.image, recipe), built

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
