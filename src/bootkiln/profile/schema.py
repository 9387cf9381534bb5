"""The profile schema: every table and key a profile may hold, with its default and its checks.

A profile is a TOML image definition. Unknown keys are rejected, types are checked, and every
error names the file and the dotted key. With no profile at all, the built-in defaults make a
minimal Debian image, so every task works out of the box.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ByteSize, Field, field_validator, model_validator

from bootkiln.errors import InputError
from bootkiln.formats.arch import SUPPORTED
from bootkiln.paths import project_root
from bootkiln.profile.aws import AwsSettings
from bootkiln.profile.model import StrictModel
from bootkiln.profile.scale import CacheSettings, ClusterSettings
from bootkiln.profile.secureboot import SecureBootSettings
from bootkiln.profile.userdata import UserdataSettings

DEFAULT_PROFILE = "default"
SNAPSHOT_FORMAT = "%Y%m%dT%H%M%SZ"

PackageName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9]+)?$")]
Word = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class DebianSettings(StrictModel):
    """What Debian to bootstrap, and from which archive state."""

    suite: Word = Field(
        default="bookworm",
        description="Debian suite or codename to bootstrap",
    )
    architecture: str = Field(
        default="amd64",
        description=f"the target's Debian architecture: {', '.join(f'`{name}`' for name in SUPPORTED)}",
    )
    mirror: str = Field(
        default="http://deb.debian.org/debian",
        description="archive URL (`http(s)://` or `file://`)",
    )
    snapshot: str | None = Field(
        default=None,
        description="`YYYYMMDDTHHMMSSZ`: use snapshot.debian.org at that time for every apt source",
    )
    variant: Literal["extract", "custom", "essential", "apt", "required", "minbase", "buildd", "important",
                     "standard"] = Field(
        default="minbase",
        description="mmdebstrap variant (`essential`, `required`, `minbase`, `buildd`, `important`, `standard`, ...)",
    )
    components: list[Word] = Field(
        default_factory=lambda: ["main"],
        min_length=1,
        description="archive components",
    )
    source_date_epoch: int | None = Field(
        default=None,
        ge=0,
        description="override SOURCE_DATE_EPOCH (otherwise the snapshot time or the Release file's Date)",
        json_schema_extra={"shown_default": "from the archive"},
    )

    @field_validator("architecture")
    @classmethod
    def _supported_architecture(cls, value: str) -> str:
        if value not in SUPPORTED:
            raise ValueError(f"{value!r} is not a supported architecture; bootkiln builds for: {', '.join(SUPPORTED)}")
        return value

    @field_validator("mirror")
    @classmethod
    def _mirror_is_url(cls, value: str) -> str:
        if not re.match(r"^(https?|file)://[^\s]+$", value):
            raise ValueError(f"mirror must be an http(s):// or file:// URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("snapshot")
    @classmethod
    def _snapshot_is_past_timestamp(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            moment = datetime.strptime(value, SNAPSHOT_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise ValueError(
                f"snapshot must look like 20250520T000000Z (YYYYMMDDTHHMMSSZ, UTC), got {value!r}"
            ) from None
        if moment > datetime.now(UTC):
            raise ValueError(f"snapshot {value} is in the future; pick a time the archive has already seen")
        return value


class FileAttrs(StrictModel):
    """Mode and ownership for one overlay path (git keeps neither owners nor most mode bits)."""

    mode: Annotated[str, Field(pattern=r"^0?[0-7]{3,4}$")]
    uid: int = Field(default=0, ge=0)
    gid: int = Field(default=0, ge=0)


class RootfsSettings(StrictModel):
    packages: list[PackageName] = Field(
        default_factory=list,
        description="extra packages to install",
    )
    overlays: list[str] = Field(
        default_factory=lambda: ["rootfs-base"],
        description=(
            "folders copied over the rootfs, in order; a name is looked up beside the profile, then in "
            "`overlays/`"),
    )
    attrs: dict[str, FileAttrs] = Field(
        default_factory=dict,
        description=(
            "`mode` (octal string), `uid`, `gid` for an overlay path; otherwise folders are 0755, files 0644 "
            "or 0755 if executable, owned by root"),
    )

    @field_validator("attrs")
    @classmethod
    def _attrs_are_absolute(cls, value: dict[str, FileAttrs]) -> dict[str, FileAttrs]:
        for path in value:
            if not path.startswith("/") or ".." in path.split("/"):
                raise ValueError(f"attrs keys are absolute paths inside the image, got {path!r}")
        return value


DEFAULT_MODULES = [
    # virtual disks and NICs of KVM/QEMU, Xen and Nitro (EC2)
    "virtio_pci", "virtio_blk", "virtio_net", "virtio_scsi", "nvme", "ena", "xen-blkfront", "xen-netfront",
    # filesystems the images read or make
    "ext4", "vfat", "iso9660", "squashfs", "overlay",
]
# Per target architecture where it differs: arm64 machines are QEMU's virt and EC2 Graviton (Nitro:
# nvme, ena); there is no Xen guest there.
DEFAULT_MODULES_FOR = {
    "arm64": ["virtio_pci", "virtio_blk", "virtio_net", "virtio_scsi", "nvme", "ena",
              "ext4", "vfat", "iso9660", "squashfs", "overlay"],
}
KERNEL_FLAVOURS = {"amd64": "amd64", "arm64": "arm64"}
# The kernel command line's consoles where amd64's (tty0, then ttyS0) do not fit. arm64 machines have
# no screen worth a console but one of two serial ports: QEMU virt's PL011 (ttyAMA0) or Graviton's
# 16550 on PCI (ttyS0; EC2 has no PL011). Naming both, with no tty0, puts the kernel log and
# /dev/console on whichever exists: the last console= is preferred (ttyS0 on EC2), and where it is
# absent the first serial port to register takes /dev/console. With tty0 named, tty0 registers first
# and takes /dev/console whenever the preferred port is missing (measured under AAVMF, with and
# without a PL011, a PCI 16550 and an SPCR table naming either; README, arm64).
DEFAULT_CONSOLES = {"arm64": "console=ttyAMA0,115200 console=ttyS0,115200"}


class KernelSettings(StrictModel):
    """Where the kernel comes from (never installed: unpacked), and which modules the image carries."""

    package: str | None = Field(
        default=None,
        description="the kernel package (a metapackage is followed to the real one)",
        json_schema_extra={"shown_default": "`linux-image-<flavour>`"},
    )
    deb: str | None = Field(
        default=None,
        description="a local kernel .deb instead, relative to the profile (or in `debs/`)",
    )
    apt_source: str | None = Field(
        default=None,
        description=(
            "a sources.list line to take the kernel from, e.g. `deb http://deb.debian.org/debian "
            "bookworm-backports main`"),
    )
    modules: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")]] = Field(
        default_factory=lambda: list(DEFAULT_MODULES),
        description="modules to carry; their dependencies come along",
        json_schema_extra={"shown_default": "virtio, nvme, ena, xen (amd64 only), ext4, vfat, iso9660, squashfs, "
                           "overlay"},
    )

    @field_validator("apt_source")
    @classmethod
    def _apt_source_line(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^deb (\[[^\]]*\] )?(https?|file)://\S+ \S+( [\w-]+)+$", value):
            raise ValueError(f"apt_source must be a line like 'deb http://deb.debian.org/debian "
                             f"bookworm-backports main', got {value!r}")
        return value


Applet = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\[-]+$")]
BASE_APPLETS = [
    # what /init and the rescue stage use
    "sh", "mount", "umount", "mkdir", "mknod", "ln", "cat", "echo", "sleep", "modprobe", "switch_root", "setsid",
    "cttyhack", "udhcpc", "ip", "ifconfig", "route", "hostname", "init", "getty", "poweroff", "reboot", "dmesg",
    # what a rescue or installer shell needs
    "wget", "fdisk", "mkfs.ext2", "mkfs.vfat", "blkid", "tar", "gzip", "xz", "cpio", "sha256sum", "vi", "sed",
    "awk", "grep", "find", "dd", "chroot", "ps", "kill", "less", "nc", "nslookup", "ping",
]


class BusyboxSettings(StrictModel):
    config: str = Field(
        default="busybox.config",
        description="the busybox configuration, relative to the profile, then `configs/`",
    )
    applets: list[Applet] = Field(
        default_factory=lambda: list(BASE_APPLETS),
        description="applets the image needs; checked against the config before building",
        json_schema_extra={"shown_default": "what `/init` and a rescue shell use"},
    )


class InitramfsSettings(StrictModel):
    compression: Literal["gzip", "xz", "zstd"] = Field(
        default="xz",
        description="`gzip`, `xz` or `zstd`",
    )
    overlays: list[str] = Field(
        default_factory=lambda: ["initramfs-base"],
        description="folders copied into the initramfs, in order (they hold `/init` and `lib/bootkiln/stages/`)",
    )
    attrs: dict[str, FileAttrs] = Field(
        default_factory=dict,
        description="mode/uid/gid for an initramfs overlay path",
    )
    stage: Word = Field(
        default="rescue",
        description=(
            "the stage `/init` runs (`lib/bootkiln/stages/<stage>`); `bootkiln.stage=` on the kernel command "
            "line overrides it"),
    )
    max_size: ByteSize | None = Field(
        default=None,
        description='size budget of the compressed initramfs, e.g. `"3MiB"`',
    )


class IsoSettings(StrictModel):
    # Joliet volume identifiers hold 16 characters (ISO 9660's hold 32).
    label: Annotated[str, Field(pattern=r"^[A-Z0-9_]{1,16}$")] = Field(
        default="BOOTKILN",
        description="volume label (A-Z, 0-9, _; at most 16 characters, as Joliet allows)",
    )
    cmdline: str = Field(
        default="console=tty0 console=ttyS0,115200",
        description="kernel command line",
    )
    max_size: ByteSize | None = Field(
        default=None,
        description='size budget of the ISO, e.g. `"12MiB"`',
    )

    @field_validator("cmdline")
    @classmethod
    def _cmdline_is_one_line(cls, value: str) -> str:
        if "\n" in value or len(value) > 1024:
            raise ValueError("cmdline is one line of at most 1024 characters")
        return value


class DiskSettings(StrictModel):
    """The raw disk image `invoke build-disk` makes: GPT, BIOS boot, ESP and an ext4 root."""

    size: ByteSize = Field(
        default=ByteSize(1 << 30),
        description="size of the raw disk image (`invoke build-disk`); kept sparse",
        json_schema_extra={"shown_default": "`1GiB`"},
    )
    esp_size: ByteSize = Field(
        default=ByteSize(64 << 20),
        description="size of its EFI system partition",
        json_schema_extra={"shown_default": "`64MiB`"},
    )
    seed: str | None = Field(
        default=None,
        description="what the disk, partition and filesystem GUIDs/UUIDs, hash seed and FAT serial derive from",
        json_schema_extra={"shown_default": "the profile's name"},
    )
    cmdline: str = Field(
        default="console=tty0 console=ttyS0,115200",
        description="kernel command line of the disk image (root=UUID=... is added)",
    )
    stage: Word = Field(
        default="root",
        description="the initramfs stage the disk boots (`root` mounts the ext4 root and switches to its init)",
    )
    layout: Literal["root", "installer"] = Field(
        default="root",
        description=(
            "`root`: the rootfs is the disk's root; `installer`: the third partition holds the installer "
            "(kernel, initramfs, payload) and becomes the installed system's `/boot` (ESPs under 64 MiB are "
            "FAT16)"),
    )

    @field_validator("size", "esp_size")
    @classmethod
    def _whole_mebibytes(cls, value: ByteSize) -> ByteSize:
        if value % (1 << 20) or value < (32 << 20):
            raise ValueError(f"must be a whole number of MiB and at least 32 MiB, got {value} bytes")
        return value


BootMode = Literal["bios-cd", "bios-usb", "uefi-cd", "uefi-usb", "disk-bios", "disk-uefi",
                   "uefi-cd-sb", "uefi-usb-sb", "disk-uefi-sb", "uefi-cd-ownkey", "uefi-usb-ownkey",
                   "disk-uefi-ownkey"]
BOOT_MODES: tuple[BootMode, ...] = ("bios-cd", "bios-usb", "uefi-cd", "uefi-usb", "disk-bios", "disk-uefi",
                                    "uefi-cd-sb", "uefi-usb-sb", "disk-uefi-sb", "uefi-cd-ownkey", "uefi-usb-ownkey",
                                    "disk-uefi-ownkey")
ISO_BOOT_MODES: tuple[BootMode, ...] = ("bios-cd", "bios-usb", "uefi-cd", "uefi-usb")
# Under OVMF with Secure Boot on and Microsoft's keys enrolled: Debian's signed chain must boot.
SECURE_BOOT_MODES: tuple[BootMode, ...] = ("uefi-cd-sb", "uefi-usb-sb", "disk-uefi-sb")
# Under OVMF with Secure Boot on and only the profile's own certificate enrolled ([secureboot] cert).
OWN_KEY_MODES: tuple[BootMode, ...] = ("uefi-cd-ownkey", "uefi-usb-ownkey", "disk-uefi-ownkey")


class BootSettings(StrictModel):
    """How `invoke boot-test` boots the image."""

    timeout: int = Field(
        default=240,
        ge=10,
        description="seconds to wait for the boot marker, per mode",
    )
    memory: int = Field(
        default=512,
        ge=128,
        description="guest memory in MiB",
    )
    modes: list[BootMode] = Field(
        default_factory=lambda: list(ISO_BOOT_MODES),
        description=(
            "what `invoke boot-test` boots: `bios-cd`, `bios-usb`, `uefi-cd`, `uefi-usb`, `disk-bios`, "
            "`disk-uefi`, and under Secure Boot with Microsoft's keys `uefi-cd-sb`, `uefi-usb-sb`, `disk-uefi-sb`, "
            "or with only the profile's own certificate enrolled `uefi-cd-ownkey`, `uefi-usb-ownkey`, "
            "`disk-uefi-ownkey`"),
        json_schema_extra={"shown_default": "the four ISO modes"},
    )


class BuilderSettings(StrictModel):
    """Where the builder container's Debian base comes from."""

    base: Literal["auto", "image", "mmdebstrap"] = Field(
        default="auto",
        description=(
            "how the builder image is made: `image` (docker/Dockerfile on a pinned image, local or pulled), "
            "`mmdebstrap` (bootstrapped on this host and assembled reproducibly), or `auto` (a local pinned "
            "image, else mmdebstrap, else pull)"),
    )
    image: str = Field(
        default="docker.io/library/debian:bookworm-20250520-slim",
        description="the pinned base image for `image` mode",
    )
    suite: Word = Field(
        default="bookworm",
        description="the builder's Debian suite when bootkiln makes it with mmdebstrap",
    )


NfsLocation = Annotated[str, Field(pattern=r"^[A-Za-z0-9.:\[\]-]+:/[^\s,]*$")]
DEFAULT_EXCLUDES = [
    # the client mounts these from the server, or gets them as tmpfs
    "/usr/*", "/home/*", "/var/*", "/tmp/*", "/run/*", "/proc/*", "/sys/*", "/dev/*", "/boot/*", "/media/*",
    "/mnt/*", "/lost+found",
    # secrets and identities of the machine the tree came from
    "/etc/ssh/ssh_host_*", "/etc/machine-id", "/root/.ssh", "/root/.bash_history", "/etc/krb5.keytab",
]


class NfsrootSettings(StrictModel):
    """The diskless client: its root over NFS (or, live, from the ISO), configured in one place."""

    nfsroot: NfsLocation | None = Field(
        default=None,
        description='NFSROOT of a diskless client, `SERVER:/PATH`; required when `initramfs.stage = "nfs"`',
    )
    device: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")] = Field(
        default="eth0",
        description="DEVICE: the interface the initramfs configures with DHCP",
    )
    version: Literal[3, 4] = Field(
        default=3,
        description="NFS version, 3 or 4",
    )
    options: Annotated[str, Field(pattern=r"^[A-Za-z0-9_=.,:-]*$")] = Field(
        default="noacl,proto=tcp,port=2049,mountport=20048,mountproto=tcp,nolock",
        description="NFS mount options (explicit ports: no portmapper needed)",
    )
    usr: NfsLocation | None = Field(
        default=None,
        description="where /usr is mounted from, read-only",
        json_schema_extra={"shown_default": "`SERVER:/usr`"},
    )
    home: NfsLocation | None = Field(
        default=None,
        description="where /home is mounted from, read-only",
        json_schema_extra={"shown_default": "`SERVER:/home`"},
    )
    exclude: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXCLUDES),
        description="paths left out of the client tree",
        json_schema_extra={"shown_default": "/usr/*, /home/*, /var/*, /tmp/*, ssh host keys, machine-id, ..."},
    )
    syslog: str | None = Field(
        default=None,
        description="remote syslog host",
        json_schema_extra={"shown_default": "the NFS server"},
    )
    source: str | None = Field(
        default=None,
        description="an existing root folder to copy instead of the built rootfs (also `invoke nfsroot --source`)",
    )
    overlays: list[str] = Field(
        default_factory=lambda: ["diskless"],
        description="template overlays for the client's /etc (`*.in` files are filled from this table)",
    )
    root: Literal["nfs", "iso"] = Field(
        default="nfs",
        description="`nfs`, or `iso` for the live variant (squashfs on the ISO, no NFS server)",
    )

    @property
    def server(self) -> str:
        assert self.nfsroot is not None
        return self.nfsroot.rsplit(":/", 1)[0]

    def mount_for(self, folder: str) -> str:
        configured = {"/usr": self.usr, "/home": self.home}[folder]
        return configured or f"{self.server}:{folder}"


class InstallerSettings(StrictModel):
    """The installer profile: what it carries for an offline install, and what the target gets."""

    payload: bool = Field(
        default=True,
        description=(
            "carry the rootfs (xz) for an offline install; `false`: the installer only installs online "
            "(debootstrap)"),
    )
    target_modules: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")]] = Field(
        default_factory=list,
        description=(
            "kernel modules the installed system gets (with their dependencies, plus the kernel's config and "
            "System.map)"),
        json_schema_extra={"shown_default": "none"},
    )
    boot_size: ByteSize = Field(
        default=ByteSize(256 << 20),
        description="the `/boot` partition the installer makes on a disk it did not boot from",
        json_schema_extra={"shown_default": "`256MiB`"},
    )
    esp_size: ByteSize = Field(
        default=ByteSize(64 << 20),
        description="the EFI system partition it makes there (FAT32)",
        json_schema_extra={"shown_default": "`64MiB`"},
    )


class ChecksSettings(StrictModel):
    """Extra testinfra check files for `invoke test-image`, relative to the profile file."""

    paths: list[str] = Field(
        default_factory=list,
        description="extra testinfra check files for `invoke test-image`, relative to the profile",
    )


class SigningSettings(StrictModel):
    """[signing]: the key that signs the build's provenance (docs/supply-chain.md)."""

    key: str | None = Field(
        default=None,
        description="private key (PEM, Ed25519 or ECDSA P-256) that signs provenance.dsse.json, relative to the "
        "profile; `BOOTKILN_SIGNING_KEY` overrides it. Never recorded in any output",
        json_schema_extra={"shown_default": "unsigned"},
    )


class Profile(StrictModel):
    name: Word = Field(
        default=DEFAULT_PROFILE,
        description="name of the output folder `out/<name>/`",
        json_schema_extra={"shown_default": "file name"},
    )
    description: str = Field(
        default="minimal Debian, built-in defaults",
        description="one line shown by `invoke profiles`",
        json_schema_extra={"shown_default": ""},
    )
    debian: DebianSettings = Field(default_factory=DebianSettings)
    rootfs: RootfsSettings = Field(default_factory=RootfsSettings)
    kernel: KernelSettings = Field(default_factory=KernelSettings)
    busybox: BusyboxSettings = Field(default_factory=BusyboxSettings)
    initramfs: InitramfsSettings = Field(default_factory=InitramfsSettings)
    iso: IsoSettings = Field(default_factory=IsoSettings)
    disk: DiskSettings = Field(default_factory=DiskSettings)
    nfsroot: NfsrootSettings = Field(default_factory=NfsrootSettings)
    boot: BootSettings = Field(default_factory=BootSettings)
    builder: BuilderSettings = Field(default_factory=BuilderSettings)
    checks: ChecksSettings = Field(default_factory=ChecksSettings)
    installer: InstallerSettings = Field(default_factory=InstallerSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)
    userdata: UserdataSettings = Field(default_factory=UserdataSettings)
    signing: SigningSettings = Field(default_factory=SigningSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    secureboot: SecureBootSettings = Field(default_factory=SecureBootSettings)
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("secureboot", mode="before")
    @classmethod
    def _secureboot_switch(cls, value: Any) -> Any:
        # `secureboot = false` reads better than a table with one key in it.
        return {"enabled": value} if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _defaults_for_architecture(self) -> Profile:
        """Unset keys whose default depends on the target architecture take that architecture's value
        (amd64's are the fields' own defaults); BIOS boot modes are refused where there is no BIOS."""
        arch = self.debian.architecture
        if arch == "amd64":
            return self
        defaults: dict[str, tuple[str, Any]] = {
            "kernel": ("modules", list(DEFAULT_MODULES_FOR[arch])),
            "iso": ("cmdline", DEFAULT_CONSOLES[arch]),
            "disk": ("cmdline", DEFAULT_CONSOLES[arch]),
            "boot": ("modes", [mode for mode in self.boot.modes if mode.startswith(("uefi", "disk-uefi"))]),
        }
        for table, (key, value) in defaults.items():
            settings = getattr(self, table)
            if key not in settings.model_fields_set:
                object.__setattr__(self, table, settings.model_copy(update={key: value}))
        if bios := [mode for mode in self.boot.modes if "bios" in mode]:
            raise ValueError(f"boot.modes: {', '.join(bios)}: {arch} machines have no BIOS; "
                             "use the UEFI modes (uefi-cd, uefi-usb, disk-uefi)")
        # Debian signs shim, GRUB and the kernel for arm64 too, so its signed chain is the default there
        # as on amd64. An arm64 own-key UKI has not been made or boot-tested yet (docs/secureboot.md).
        if self.secureboot.own_keys:
            raise ValueError(f"secureboot: own-key Unified Kernel Images (key/cert) are built for amd64 only "
                             f"so far, not {arch}; remove key and cert to boot Debian's signed chain")
        if ownkey := [mode for mode in self.boot.modes if mode.endswith("-ownkey")]:
            raise ValueError(f"boot.modes: {', '.join(ownkey)}: own-key Unified Kernel Images are built for "
                             "amd64 only so far; use the -sb modes (Debian's signed chain)")
        return self

    @property
    def where(self) -> str:
        """How messages name this profile: its file, or the built-in default."""
        return str(self.source) if self.source else "built-in default profile"

    @property
    def base_dir(self) -> Path:
        """Relative paths in a profile are resolved against the profile's own folder."""
        return self.source.parent if self.source else project_root() / "profiles"

    def resolved(self) -> dict[str, Any]:
        """The profile as built: every default filled in, in a stable JSON-able form.

        [signing] is left out: where the key lives says nothing about what was built, and a signed and
        an unsigned build of one profile are the same build. So are [cache] and [cluster]: where results are
        shared and where stages run.
        """
        return self.model_dump(mode="json", exclude={"source", "signing", "cache", "cluster"})


def is_installer(profile: Profile) -> bool:
    return profile.initramfs.stage == "installer"


def carries_payload(profile: Profile) -> bool:
    """Installer images carry the rootfs for an offline install unless the profile says otherwise."""
    return is_installer(profile) and profile.installer.payload


def require_nfsroot(profile: Profile) -> NfsrootSettings:
    settings = profile.nfsroot
    if settings.nfsroot is None:
        raise InputError(f"{profile.where}: key 'nfsroot.nfsroot' is not set: a diskless "
                         "client needs NFSROOT, the SERVER:/PATH its root is mounted from",
                         hint='add e.g. [nfsroot] nfsroot = "10.0.2.2:/srv/bootkiln/diskless/root"')
    return settings


def kernel_package(profile: Profile) -> str:
    return profile.kernel.package or f"linux-image-{KERNEL_FLAVOURS[profile.debian.architecture]}"
