"""A build's output folder made without Docker: real files, a real manifest and the real record writers.

The artifacts are small stand-ins (a rootfs tarball holding a dpkg status and DEP-5 copyright files,
an ISO of random bytes), but the SBOMs, manifest and provenance are written by bootkiln.attest.records
exactly as Build.publish writes them.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from bootkiln import __version__
from bootkiln.attest import records
from bootkiln.attest.archive_index import ArchiveIndex
from bootkiln.attest.keys import PrivateKey
from bootkiln.attest.packages import BUILDER_SEPARATOR
from bootkiln.core.manifest import FORMAT, seal
from bootkiln.profile.schema import Profile

EPOCH = 1_700_000_000
DEP5 = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
ROOTFS_PACKAGES = [
    # name, version, architecture, sha256 of the .deb, source field, copyright file
    ("base-files", "12.4+deb12u5", "amd64", "a" * 64, "", None),
    ("libc6", "2.36-9+deb12u7", "amd64", "b" * 64, "glibc",
     DEP5 + "\nFiles: *\nCopyright: FSF\nLicense: LGPL-2.1+\n\nFiles: debian/*\nCopyright: x\nLicense: GPL-2+\n"),
    ("bash", "5.2.15-2+b7", "amd64", "c" * 64, "bash (5.2.15-2)",
     DEP5 + "\nFiles: *\nCopyright: FSF\nLicense: GPL-3+\n\nLicense: GPL-3+\n On Debian systems...\n"),
    ("tzdata", "2024a-0+deb12u1", "all", "d" * 64, "", DEP5 + "\nFiles: *\nCopyright: none\nLicense: public-domain\n"),
    ("libstdc++6", "12.2.0-14", "amd64", "e" * 64, "gcc-12", "not a machine-readable file\n"),
]
BUILDER_REPORT = [
    "dpkg\t1.21.22\tamd64\tdpkg\t1.21.22",
    "isolinux\t3:6.04~git20190206.bf6db5b4+dfsg1-3\tall\tsyslinux\t3:6.04~git20190206.bf6db5b4+dfsg1-3",
    "libc6\t2.36-9+deb12u7\tamd64\tglibc\t2.36-9+deb12u7",
    BUILDER_SEPARATOR,
    f"/usr/share/doc/dpkg/copyright:{DEP5.strip()}",
    "/usr/share/doc/dpkg/copyright:Files: *",
    "/usr/share/doc/dpkg/copyright:License: GPL-2+",
]


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), EPOCH
    archive.addfile(info, io.BytesIO(data))


def rootfs_tar() -> bytes:
    status = "\n".join(
        f"Package: {name}\nStatus: install ok installed\nArchitecture: {arch}\nVersion: {version}\n"
        + (f"Source: {source}\n" if source else "") for name, version, arch, _, source, _ in ROOTFS_PACKAGES)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        _add(archive, "./var/lib/dpkg/status", status.encode())
        for name, *_, copyright_text in ROOTFS_PACKAGES:
            if copyright_text is not None:
                _add(archive, f"./usr/share/doc/{name}/copyright", copyright_text.encode())
    return buffer.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class AttestedBuild:
    out: Path
    profile: Profile
    listed: dict[str, str]


def make_build_folder(out: Path, key: PrivateKey | None, profile_name: str = "default",
                      iso: bytes = b"\x00" * 4096 + b"an ISO stand-in", archive_index: ArchiveIndex | None = None,
                      builder_archive_index: ArchiveIndex | None = None,
                      kernel_sha256: str = "7" * 64) -> AttestedBuild:
    """Write artifacts, then the records as Build.publish does; return the folder and SHA256SUMS's entries."""
    profile = Profile(name=profile_name)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "rootfs.tar": rootfs_tar(),
        "packages.tsv": "".join(f"{n}\t{v}\t{a}\t{s}\n" for n, v, a, s, _, _ in ROOTFS_PACKAGES).encode(),
        "boot.iso": iso,
        "vmlinuz": b"kernel",
        "initrd.img": b"initrd",
        "busybox": b"busybox binary",
        "applets.txt": b"/bin/sh\n/bin/ls\n/sbin/udhcpc\n",
        "isolinux.bin": b"isolinux",
        # The target's package fetched from the archive (its sha256 left to the index), then a builder tool.
        "bootloader-packages.tsv": b"isolinux\t3:6.04~git20190206.bf6db5b4+dfsg1-3\tall\n"
                                   b"mtools\t4.0.33-1+really4.0.32-1\n",
    }
    for name, data in files.items():
        (out / name).write_bytes(data)
    sums = {name: _sha(data) for name, data in files.items()}

    def stage(names: list[str], **facts: object) -> dict[str, object]:
        return {"key": _sha("".join(names).encode()), **facts, "artifacts": {n: sums[n] for n in names}}

    manifest = seal({
        "format": FORMAT,
        "bootkiln": {"version": __version__, "commit": "0" * 40},
        "profile": profile.resolved(),
        "profile_file": None,
        "archive": {"suite": "bookworm", "mirror": "http://deb.debian.org/debian", "snapshot": None,
                    "release_sha256": "f" * 64, "source_date_epoch": EPOCH},
        "builder": {"tag": "bootkiln-builder:test", "image_id": "sha256:" + "9" * 64, "base": "mmdebstrap",
                    "base_recipe": {}},
        "inputs": {},
        "stages": {
            "rootfs": stage(["rootfs.tar", "packages.tsv"], packages=len(ROOTFS_PACKAGES)),
            "kernel": stage(["vmlinuz"], package="linux-image-6.1.0-50-amd64", package_version="6.1.176-1",
                            package_sha256=kernel_sha256, version="6.1.0-50-amd64"),
            "busybox": stage(["busybox", "applets.txt"], source_version="1:1.35.0-4+deb12u1", applets=156,
                             source_sha256={"busybox_1.35.0-4+deb12u1.dsc": "6" * 64}),
            "initramfs": stage(["initrd.img"]),
            "bootloader": stage(["isolinux.bin", "bootloader-packages.tsv"]),
            "iso": stage(["boot.iso"]),
        },
        "artifacts": sums,
    })
    consumers = {"rootfs": set(), "kernel": {"initramfs", "iso"}, "busybox": {"initramfs", "iso"},
                 "initramfs": {"iso"}, "bootloader": {"iso"}}
    from bootkiln.attest.packages import read_rootfs

    sources = records.BuildSources(profile=profile, manifest=manifest, artifacts=sums, consumers=consumers,
                                   builder_report=list(BUILDER_REPORT), rootfs_details=read_rootfs(out / "rootfs.tar"),
                                   archive_index=archive_index, builder_archive_index=builder_archive_index)
    listed = records.publish(out, sources, key)
    (out / "SHA256SUMS").write_text("".join(f"{listed[n]}  {n}\n" for n in sorted(listed)))
    return AttestedBuild(out, profile, listed)
