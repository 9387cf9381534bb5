"""The `[userdata]` profile table and the disk layout, Puppet and certificate settings it holds.

The same models validate the user-data document the installer reads (installer/userdata.py builds
the document from them), so the profile and the document cannot disagree on what a layout is.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    model_validator,
)

from bootkiln.profile.model import StrictModel

Hostname = Annotated[str, Field(max_length=253,
                                pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")]
Certname = Annotated[str, Field(max_length=253, pattern=r"^[a-z0-9][a-z0-9._-]*$")]
PuppetEnvironment = Annotated[str, Field(pattern=r"^[a-z0-9_]+$", max_length=64)]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,30}$")]


def _no_dot_components(path: str) -> str:
    """`.` and `..` would let "$target$mount" land outside the target, and dodge the /boot and
    unique-mountpoint checks (`/boot/.`, `/srv/../boot`): a mountpoint is a plain absolute path."""
    if any(part in (".", "..") for part in path.split("/")):
        raise ValueError(f"mountpoint {path!r} has a '.' or '..' component; give a plain absolute path like /srv")
    return path


# No empty components (`//`) and no trailing slash (except `/` itself): the pattern's job.
MountPoint = Annotated[str, Field(pattern=r"^/([A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)?$", max_length=200),
                       AfterValidator(_no_dot_components)]
Device = Annotated[str, Field(pattern=r"^/dev/[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")]
SIZE_UNITS = {"MiB": 1, "GiB": 1024, "TiB": 1024 * 1024}


def _parse_size(value: Any) -> Any:
    """Sizes are whole MiB on the wire (busybox sh does integer arithmetic only)."""
    if isinstance(value, str) and value != "rest":
        match = re.fullmatch(r"([0-9]+) ?(MiB|GiB|TiB)", value)
        if not match:
            raise ValueError(f"a size is an integer (MiB), a string like '512MiB', '20GiB' or '1TiB', "
                             f"or 'rest' for the remaining space; got {value!r}")
        return int(match[1]) * SIZE_UNITS[match[2]]
    return value


Size = Annotated[Annotated[int, Field(ge=1)] | Literal["rest"], BeforeValidator(_parse_size)]
FORMATTED = ("ext4", "xfs", "vfat")


# The installer's own partition becomes /boot (and its ESP /boot/efi): the layout gets the rest.
RESERVED_MOUNTPOINTS = ("/boot", "/boot/efi")


def _check_mountpoint(filesystem: str, mountpoint: str | None, what: str) -> None:
    if mountpoint in RESERVED_MOUNTPOINTS:
        raise ValueError(f"{what}: {mountpoint} is the installer's own partition; mount nothing there")
    if filesystem in FORMATTED and mountpoint is None:
        raise ValueError(f"{what}: a {filesystem} filesystem needs a mountpoint")
    if filesystem not in FORMATTED and mountpoint is not None:
        raise ValueError(f"{what}: {filesystem} is not mounted, so it takes no mountpoint")


class Partition(StrictModel):
    """A GPT partition; `lvm` makes it the volume group's physical volume."""

    name: Name
    size: Size
    filesystem: Literal["ext4", "xfs", "vfat", "swap", "lvm"]
    mountpoint: MountPoint | None = None

    @model_validator(mode="after")
    def _mountpoint_fits(self) -> Partition:
        _check_mountpoint(self.filesystem, self.mountpoint, f"partition {self.name!r}")
        return self


class LogicalVolume(StrictModel):
    name: Name
    size: Size
    filesystem: Literal["ext4", "xfs", "swap"]
    mountpoint: MountPoint | None = None

    @model_validator(mode="after")
    def _mountpoint_fits(self) -> LogicalVolume:
        _check_mountpoint(self.filesystem, self.mountpoint, f"logical volume {self.name!r}")
        return self


class VolumeGroup(StrictModel):
    name: Name
    logical_volumes: list[LogicalVolume] = Field(min_length=1)


def _default_partitions() -> list[Partition]:
    return [Partition(name="root", size="rest", filesystem="ext4", mountpoint="/")]


def _sized_in_order(entries: list[Partition] | list[LogicalVolume], what: str) -> None:
    names = [entry.name for entry in entries]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{what} names must be unique; repeated: {', '.join(duplicates)}")
    for entry in entries[:-1]:
        if entry.size == "rest":
            raise ValueError(f"{what} {entry.name!r} takes the 'rest' of the space, so it must come last")


class DiskLayout(StrictModel):
    """What the installer makes on `device`. Without `wipe`, the installer's own partition is kept."""

    device: Device = Field(
        default="/dev/nvme0n1",
        description="the disk the installer partitions",
    )
    wipe: bool = Field(
        default=False,
        description=(
            "`false`: the installer refuses a disk holding partitions or filesystems; `true`: it erases such "
            "a disk first. The installer's own partition (kept as `/boot`) always survives"),
    )
    partitions: list[Partition] = Field(
        default_factory=_default_partitions,
        min_length=1,
        max_length=100,
        description=(
            'list of `{ name, size, filesystem, mountpoint }`; size in MiB or `"512MiB"`, `"20GiB"`, '
            '`"1TiB"`, or `"rest"` (last only); filesystem `ext4`, `xfs`, `vfat`, `swap` or `lvm`; never '
            "`/boot` or `/boot/efi` (the installer's own)"),
        json_schema_extra={"shown_default": "one ext4 `/` taking the rest"},
    )
    volume_group: VolumeGroup | None = Field(
        default=None,
        description=(
            "`{ name, logical_volumes = [{ name, size, filesystem, mountpoint }] }` on the one `lvm` "
            "partition"),
    )

    @model_validator(mode="after")
    def _consistent(self) -> DiskLayout:
        _sized_in_order(self.partitions, "partition")
        physical = [p.name for p in self.partitions if p.filesystem == "lvm"]
        if self.volume_group is None and physical:
            raise ValueError(f"partition {physical[0]!r} is an LVM physical volume but no volume_group is given")
        if self.volume_group is not None:
            if len(physical) != 1:
                raise ValueError(f"a volume_group needs exactly one partition with filesystem 'lvm', "
                                 f"found {len(physical)}")
            _sized_in_order(self.volume_group.logical_volumes, "logical volume")
        mounts = [entry.mountpoint for entry in self.filesystems() if entry.mountpoint]
        repeated = sorted({m for m in mounts if mounts.count(m) > 1})
        if repeated:
            raise ValueError(f"mountpoints must be unique; repeated: {', '.join(repeated)}")
        if "/" not in mounts:
            raise ValueError("no partition or logical volume is mounted at '/'")
        return self

    def filesystems(self) -> list[Partition | LogicalVolume]:
        lvs = self.volume_group.logical_volumes if self.volume_group else []
        return [*self.partitions, *lvs]

    @property
    def physical_volume(self) -> str | None:
        return next((p.name for p in self.partitions if p.filesystem == "lvm"), None)


class PuppetSettings(StrictModel):
    server: Hostname | None = Field(
        default=None,
        description="Puppet server hostname (required to make user-data)",
    )
    environment: PuppetEnvironment = Field(
        default="production",
        description="Puppet environment",
    )
    certname: Certname | None = Field(
        default=None,
        description="Puppet certname (the certificate's CN)",
        json_schema_extra={"shown_default": "the hostname"},
    )


class CertFiles(StrictModel):
    """Existing Puppet certificates, relative to the profile file."""

    ca: str
    crl: str
    cert: str
    key: str


KeyType = Literal["rsa-2048", "rsa-4096", "ec-p256"]


class UserdataSettings(StrictModel):
    """The `[userdata]` profile table. The hostname is usually given per instance, on the command line."""

    hostname: Hostname | None = Field(
        default=None,
        description="the host's FQDN; usually given per instance with `--hostname`",
    )
    disk: DiskLayout = Field(default_factory=DiskLayout)
    puppet: PuppetSettings = Field(default_factory=PuppetSettings)
    certs: Literal["generate"] | CertFiles = Field(
        default="generate",
        description=(
            '`"generate"` (a CA and per-host certificates in `out/<name>/pki/`) or `{ ca, crl, cert, key }`: '
            "PEM files relative to the profile"),
        json_schema_extra={"shown_default": '`"generate"`'},
    )
    key_type: KeyType = Field(
        default="rsa-2048",
        description="key type of generated keys: `rsa-2048`, `rsa-4096` or `ec-p256`",
    )
