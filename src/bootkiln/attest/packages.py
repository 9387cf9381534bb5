"""The Debian packages that went into a build, and which published artifact contains which.

Facts come from what the stages already record, never from a guess:
- the rootfs: packages.tsv (name, version, architecture, .deb sha256; scripts/rootfs.sh) and, from the
  rootfs tarball itself, dpkg's status (source packages) and the copyright files (licences);
- the kernel: the kernel stage's metadata (package, version, .deb sha256);
- busybox: the Debian source package it is compiled from (version, .dsc sha256) and its applets;
- the boot loader and the own-key UKI: bootloader-packages.tsv and uki-packages.tsv: the target's
  packages (name, version, architecture, .deb sha256) fetched from the profile's archive, then the
  builder's tools (name, version);
- the builder image: dpkg's list inside it (build tools).
What dpkg and the stages do not keep (the .deb sha256 of the builder's and the boot loader's packages,
the kernel's source package) comes from the pinned archive's Packages index (enrich, archive_index.py).
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from bootkiln.attest.archive_index import ArchiveIndex, native_architecture
from bootkiln.attest.licences import licences_from_copyright

# Published files that describe a stage's output rather than contain packages.
DESCRIPTIVE_SUFFIXES = (".txt", ".tsv", ".conf", ".json")
DESCRIPTIVE_NAMES = frozenset({"exports"})
# What the builder reports about itself: one package per line, then its copyright files' key fields.
BUILDER_QUERY = (
    "dpkg-query -W -f '${Package}\\t${Version}\\t${Architecture}\\t${source:Package}\\t${source:Version}\\n'; "
    "echo '--- copyright'; grep -H -E '^(Format|Files|License):' /usr/share/doc/*/copyright || true"
)
BUILDER_SEPARATOR = "--- copyright"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    architecture: str
    kind: Literal["binary", "source"] = "binary"
    source: str | None = None
    source_version: str | None = None
    sha256: str | None = None
    licence: str | None = None
    note: str = ""
    applets: tuple[str, ...] = ()  # busybox: the applets compiled in

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}:{self.architecture}"


@dataclass
class Inventory:
    """Every package once, the artifacts containing each, and which are the builder's tools."""

    packages: dict[str, Package] = field(default_factory=dict)
    contains: dict[str, set[str]] = field(default_factory=dict)
    build_tools: set[str] = field(default_factory=set)
    # Packages installed in the builder image (its own, and the tools that made the boot files): from the
    # builder's archive.
    from_builder: set[str] = field(default_factory=set)

    def add(self, package: Package, artifacts: list[str]) -> str:
        known = self.packages.get(package.key)
        if known is not None:  # the same package seen twice: keep every fact either sighting had
            package = replace(known, **{name: value for name, value in vars(package).items()
                                        if value and not getattr(known, name)})
        self.packages[package.key] = package
        for artifact in artifacts:
            self.contains.setdefault(artifact, set()).add(package.key)
        return package.key


@dataclass(frozen=True)
class Origin:
    """What dpkg knows about an installed package beyond packages.tsv."""

    source: str
    source_version: str
    licence: str | None = None


def is_container(artifact: str) -> bool:
    return not (artifact.endswith(DESCRIPTIVE_SUFFIXES) or artifact in DESCRIPTIVE_NAMES)


def parse_packages_tsv(text: str) -> list[tuple[str, str, str, str | None]]:
    """name, version, architecture and .deb sha256 per line (the sha256 may be absent)."""
    rows = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[0]:
            sha = fields[3] if len(fields) > 3 and re.fullmatch(r"[0-9a-f]{64}", fields[3]) else None
            rows.append((fields[0], fields[1], fields[2] if len(fields) > 2 else "", sha))
    return rows


def parse_dpkg_status(text: str) -> dict[tuple[str, str], tuple[str, str, str]]:
    """(package, architecture) -> (version, source, source version) of each installed package."""
    found: dict[tuple[str, str], tuple[str, str, str]] = {}
    for paragraph in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line and line[0] not in " \t":
                name, _, value = line.partition(":")
                fields[name] = value.strip()
        if "Package" not in fields or "installed" not in fields.get("Status", "installed"):
            continue
        version = fields.get("Version", "")
        source, source_version = fields["Package"], version
        if fields.get("Source"):
            match = re.fullmatch(r"(\S+)(?:\s+\((\S+)\))?", fields["Source"])
            if match:
                source, source_version = match.group(1), match.group(2) or version
        found[(fields["Package"], fields.get("Architecture", ""))] = (version, source, source_version)
    return found


def _member_text(archive: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    handle = archive.extractfile(member)
    return handle.read().decode("utf-8", "replace") if handle else ""


def read_rootfs(tarball: Path) -> dict[str, Any]:
    """dpkg's status and the licence of each package's copyright file, read from a rootfs tarball."""
    status = ""
    copyrights: dict[str, str | None] = {}
    doc_links: dict[str, str] = {}
    with tarfile.open(tarball) as archive:
        for member in archive:
            path = member.name.removeprefix("./").lstrip("/")
            if path == "var/lib/dpkg/status" and member.isfile():
                status = _member_text(archive, member)
            elif (match := re.fullmatch(r"usr/share/doc/([^/]+)/copyright", path)) and member.isfile():
                copyrights[match.group(1)] = licences_from_copyright(_member_text(archive, member))
            elif (match := re.fullmatch(r"usr/share/doc/([^/]+)", path)) and member.issym():
                # Some packages share another's documentation folder (a symlink to it).
                doc_links[match.group(1)] = member.linkname.rstrip("/").rsplit("/", 1)[-1]
    licences = {name: copyrights.get(doc_links.get(name, name)) for name in {*copyrights, *doc_links}}
    return {"status": status, "licences": licences}


def rootfs_origins(details: Mapping[str, Any]) -> dict[tuple[str, str], Origin]:
    licences: Mapping[str, str | None] = details["licences"]
    return {(name, arch): Origin(source, source_version, licences.get(name))
            for (name, arch), (_, source, source_version) in parse_dpkg_status(details["status"]).items()}


def parse_builder_report(lines: list[str]) -> tuple[list[Package], dict[str, str | None]]:
    """The builder's packages and their licences, from the output of BUILDER_QUERY."""
    packages: list[Package] = []
    copyright_lines: dict[str, list[str]] = {}
    in_copyright = False
    for line in lines:
        if line == BUILDER_SEPARATOR:
            in_copyright = True
        elif in_copyright:
            match = re.fullmatch(r"/usr/share/doc/([^/]+)/copyright:(.*)", line)
            if match:
                copyright_lines.setdefault(match.group(1), []).append(match.group(2))
        else:
            fields = line.split("\t")
            if len(fields) == 5 and fields[0] and fields[1]:
                name, version, arch, source, source_version = fields
                packages.append(Package(name, version, arch, source=source or name,
                                        source_version=source_version or version))
    licences = {name: licences_from_copyright("\n".join(text)) for name, text in copyright_lines.items()}
    return packages, licences


def stage_artifacts(results: Mapping[str, Mapping[str, Any]], stage: str,
                    consumers: Mapping[str, set[str]], published: set[str]) -> list[str]:
    """The published artifacts that carry a stage's output: its own and those of every stage consuming it."""
    names: list[str] = []
    for name in sorted({stage, *consumers.get(stage, set())}):
        if name in results:
            names += [a for a in results[name]["sha256"] if a in published and is_container(a)]
    return sorted(set(names))


def collect(metadata: Mapping[str, Mapping[str, Any]], consumers: Mapping[str, set[str]], published: set[str],
            architecture: str, rootfs: Mapping[str, Any] | None = None, packages_tsv: str | None = None,
            bootloader_tsv: str | None = None, uki_tsv: str | None = None,
            builder: tuple[list[Package], dict[str, str | None]] | None = None,
            applets: list[str] | None = None) -> Inventory:
    """Every package of a build, from each stage's metadata and the files named in the module docstring.

    metadata: stage name -> its stage.json; consumers: stage -> the stages that consume it, directly or not.
    """
    inventory = Inventory()
    builder_packages, builder_licences = builder or ([], {})
    builder_by_name = {package.name: package for package in builder_packages}

    if packages_tsv is not None and "rootfs" in metadata:
        origins = rootfs_origins(rootfs) if rootfs else {}
        inside = stage_artifacts(metadata, "rootfs", consumers, published)
        for name, version, arch, sha in parse_packages_tsv(packages_tsv):
            origin = origins.get((name, arch))
            inventory.add(Package(name, version, arch, source=origin.source if origin else None,
                                  source_version=origin.source_version if origin else None, sha256=sha,
                                  licence=origin.licence if origin else None), inside)

    if "kernel" in metadata:
        kernel = metadata["kernel"]
        inventory.add(Package(kernel["package"], kernel["package_version"], architecture,
                              sha256=kernel.get("package_sha256"),
                              note=f"kernel {kernel.get('version')}: vmlinuz and the selected modules"),
                      stage_artifacts(metadata, "kernel", consumers, published))

    if "busybox" in metadata:
        busybox = metadata["busybox"]
        dsc = next((digest for name, digest in busybox.get("source_sha256", {}).items() if name.endswith(".dsc")),
                   None)
        names = tuple(sorted({path.rsplit("/", 1)[-1] for path in applets or []}))
        count = len(names) or busybox.get("applets")
        inventory.add(Package("busybox", busybox["source_version"], "source", kind="source", source="busybox",
                              source_version=busybox["source_version"], sha256=dsc, applets=names,
                              note=f"source package, compiled statically with {count} applets"),
                      stage_artifacts(metadata, "busybox", consumers, published))

    # Boot files (and the own-key UKI's stub) are the target's packages, fetched from the profile's
    # archive (name, version, architecture, .deb sha256; the archive's index gives the source); the
    # builder's tools that made them are listed by name and version.
    for stage, tsv in (("bootloader", bootloader_tsv), ("uki", uki_tsv)):
        if tsv is None or stage not in metadata:
            continue
        inside = stage_artifacts(metadata, stage, consumers, published)
        for name, version, arch, sha in parse_packages_tsv(tsv):
            if arch:
                inventory.add(Package(name, version, arch, sha256=sha, licence=builder_licences.get(name),
                                      note="boot files taken from this package"), inside)
                continue
            known = builder_by_name.get(name)
            arch = known.architecture if known and known.version == version else architecture
            inventory.add(Package(name, version, arch, source=known.source if known else None,
                                  source_version=known.source_version if known else None,
                                  licence=builder_licences.get(name), note="a tool that made the boot files"),
                          inside)
            inventory.from_builder.add(f"{name}@{version}:{arch}")

    for package in builder_packages:
        key = inventory.add(replace(package, licence=builder_licences.get(package.name)), [])
        inventory.build_tools.add(key)
        inventory.from_builder.add(key)
    return inventory


def enrich(inventory: Inventory, architecture: str, archive: ArchiveIndex | None,
           builder_archive: ArchiveIndex | None) -> None:
    """Fill each binary package's missing .deb sha256 and source package from its archive's index.

    The builder's and the boot loader's packages are looked up in the builder suite's archive state,
    the others in the profile's. Only the exact (name, version, architecture) counts; a package whose
    known sha256 differs from the archive's (a local kernel.deb of the same version) is another .deb,
    and takes nothing from it.
    """
    builder_native = native_architecture((inventory.packages[key].architecture for key in inventory.from_builder),
                                         architecture)
    for key in sorted(inventory.packages):
        package = inventory.packages[key]
        on_builder = key in inventory.from_builder
        index, native = (builder_archive, builder_native) if on_builder else (archive, architecture)
        if index is None or package.kind != "binary" or (package.sha256 and package.source):
            continue
        entry = index.lookup(package.name, package.version, package.architecture, native)
        if entry is None or (package.sha256 and package.sha256 != entry.sha256):
            continue
        inventory.packages[key] = replace(
            package, sha256=package.sha256 or entry.sha256, source=package.source or entry.source,
            source_version=package.source_version if package.source else entry.source_version)
