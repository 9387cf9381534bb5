"""Ganesha's configuration for a set of exports, and the mount options a guest uses: pure, unit-testable."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, Literal

DEFAULT_NFS_PORT: Final = 2049
DEFAULT_MOUNT_PORT: Final = 20048
HOST_ADDRESS_FROM_GUEST: Final = "10.0.2.2"  # slirp's alias for the host's 127.0.0.1
GUEST_ADDRESS: Final = "10.0.2.15"  # the address slirp's DHCP hands the (first) guest

NfsVersion = Literal["3", "4", "4.0", "4.1", "4.2"]

_PSEUDO_RE: Final = re.compile(r"^(/[A-Za-z0-9_+-][A-Za-z0-9._+-]*)+$")
_UNSAFE_PATH_CHARS: Final = re.compile(r'["\\\x00-\x1f\x7f]')


@dataclasses.dataclass(frozen=True)
class Export:
    """One host directory, served at ``pseudo`` to every allowed client.

    ``pseudo`` is the path clients mount, for NFSv4 and (because the config sets ``mount_path_pseudo``) for NFSv3
    too: ``10.0.2.2:/srv/nfsroot``. ``export_id`` (1..65535) is Ganesha's key for the export and part of every file
    handle; leave it None to number exports 1, 2, ... in order. Root is not squashed unless ``root_squash``.
    """

    path: Path
    pseudo: str
    read_only: bool = True
    export_id: int | None = None
    root_squash: bool = False


def _check_config_path(path: Path, what: str) -> None:
    if not path.is_absolute():
        raise ValueError(f"{what} {path} must be an absolute path")
    if _UNSAFE_PATH_CHARS.search(str(path)):
        raise ValueError(f"{what} {str(path)!r} contains a quote, backslash or control character, which "
                         "Ganesha's config syntax cannot carry; use a plainer path")


def _numbered(exports: Sequence[Export]) -> list[tuple[int, Export]]:
    """Validate the exports and give each its id (explicit, or the next one free counting from 1)."""
    if not exports:
        raise ValueError("no exports: give at least one Export(path=..., pseudo=...)")
    explicit = [e.export_id for e in exports if e.export_id is not None]
    for export_id in explicit:
        if not 1 <= export_id <= 65535:
            raise ValueError(f"export_id {export_id} is out of range 1..65535 (0 is Ganesha's NFSv4 pseudo root)")
    if len(set(explicit)) != len(explicit):
        raise ValueError(f"duplicate export_id in {sorted(explicit)}")
    used = set(explicit)
    next_id = 1
    numbered: list[tuple[int, Export]] = []
    pseudos: set[str] = set()
    for export in exports:
        if not _PSEUDO_RE.fullmatch(export.pseudo) or any(p in (".", "..") for p in export.pseudo.split("/")):
            raise ValueError(f"pseudo path {export.pseudo!r} must be absolute, not '/', with components made of "
                             "letters, digits and ._+- (for example '/srv/nfsroot')")
        if export.pseudo in pseudos:
            raise ValueError(f"pseudo path {export.pseudo} is used by two exports")
        pseudos.add(export.pseudo)
        _check_config_path(export.path, "export path")
        if export.export_id is not None:
            numbered.append((export.export_id, export))
            continue
        while next_id in used:
            next_id += 1
        used.add(next_id)
        numbered.append((next_id, export))
    return numbered


def _check_protocols(protocols: Sequence[int]) -> tuple[int, ...]:
    chosen = tuple(sorted(set(protocols)))
    if not chosen or any(p not in (3, 4) for p in chosen):
        raise ValueError(f"protocols {tuple(protocols)} must be a non-empty subset of (3, 4)")
    return chosen


def _check_port(port: int, what: str) -> None:
    if not 0 <= port <= 65535:
        raise ValueError(f"{what} {port} is out of range 0..65535 (0 picks a free port)")


def _quote(value: str) -> str:
    return f'"{value}"'


def ganesha_config(
    exports: Sequence[Export],
    *,
    nfs_port: int = DEFAULT_NFS_PORT,
    mount_port: int = DEFAULT_MOUNT_PORT,
    protocols: Sequence[int] = (3, 4),
    bind_address: str = "127.0.0.1",
    clients: Sequence[str] = ("127.0.0.1",),
    recovery_root: Path | None = None,
    plugins_dir: Path | None = None,
    graceless: bool = True,
) -> str:
    """Return the text of a ganesha.conf serving ``exports``. Pure: touches no files, so it is unit-testable.

    NLM (locking), RQUOTA, 9P and UDP are off, so Ganesha opens exactly two TCP listeners, ``nfs_port`` and
    (with NFSv3) ``mount_port``, on ``bind_address``. Only ``clients`` (addresses or networks) get access. With
    ``graceless`` the NFSv4 grace period is skipped, so a fresh server grants the first OPEN at once.
    """
    numbered = _numbered(exports)
    chosen = _check_protocols(protocols)
    for port, what in ((nfs_port, "nfs_port"), (mount_port, "mount_port")):
        _check_port(port, what)
        if port == 0:
            raise ValueError(f"{what} 0: ganesha_config needs the real port (NfsServer resolves 0 to a free one)")
    ipaddress.ip_address(bind_address)  # raises ValueError with a clear message
    if not clients:
        raise ValueError("clients is empty: no one could mount")
    for client in clients:
        ipaddress.ip_network(client, strict=False)
    if recovery_root is not None:
        _check_config_path(recovery_root, "recovery_root")
    if plugins_dir is not None:
        _check_config_path(plugins_dir, "plugins_dir")
    proto_list = ", ".join(str(p) for p in chosen)
    client_list = ", ".join(clients)

    lines = [
        "# Generated by bootkiln's nfsserver; every value below is deliberate, see its README.",
        "NFS_CORE_PARAM {",
        f"    Bind_Addr = {bind_address};",
        f"    NFS_Port = {nfs_port};",
    ]
    if 3 in chosen:
        lines.append(f"    MNT_Port = {mount_port};")
    lines += [
        f"    Protocols = {proto_list};",  # no 9P (port 564)
        "    Enable_UDP = false;",
        "    Enable_NLM = false;",  # no lockd/statd: guests mount with nolock
        "    Enable_RQUOTA = false;",  # else port 875
        "    Enable_NFSACL = false;",
        "    mount_path_pseudo = true;",  # NFSv3 mounts the same path as NFSv4: the pseudo path
        "    heartbeat_freq = 0;",  # no D-Bus heartbeat (there is no bus)
    ]
    if plugins_dir is not None:
        lines.append(f"    Plugins_Dir = {_quote(str(plugins_dir))};")
    lines += [
        "}",
        "",
        "NFSv4 {",
        f"    Graceless = {'true' if graceless else 'false'};",
        "    Only_Numeric_Owners = true;",  # owners as '0', not 'root@localdomain' (guests run no idmapd)
    ]
    if recovery_root is not None:
        lines.append(f"    RecoveryRoot = {_quote(str(recovery_root))};")
    lines += [
        "}",
        "",
        "NFS_KRB5 {",
        "    Active_krb5 = false;",
        "}",
    ]
    for export_id, export in numbered:
        squash = "Root_Squash" if export.root_squash else "No_Root_Squash"
        lines += [
            "",
            "EXPORT {",
            f"    Export_Id = {export_id};",
            f"    Path = {_quote(str(export.path))};",
            f"    Pseudo = {_quote(export.pseudo)};",
            f"    Protocols = {proto_list};",
            "    Transports = TCP;",
            "    SecType = sys;",
            "    Access_Type = None;",  # everyone not listed in CLIENT below
            f"    Squash = {squash};",
            "    FSAL {",
            "        Name = VFS;",
            "    }",
            "    CLIENT {",
            f"        Clients = {client_list};",
            f"        Access_Type = {'RO' if export.read_only else 'RW'};",
            f"        Squash = {squash};",
            "    }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def mount_options(
    version: NfsVersion = "3",
    *,
    server: str = HOST_ADDRESS_FROM_GUEST,
    nfs_port: int = DEFAULT_NFS_PORT,
    mount_port: int = DEFAULT_MOUNT_PORT,
    client_address: str = GUEST_ADDRESS,
) -> str:
    """The ``-o`` options a guest needs to mount from this server without a portmapper.

    They are the kernel's own text options, so busybox's ``mount -t nfs -o <options> <server>:<pseudo> <dir>``
    passes them through as they are (klibc's nfsmount cannot: it asks the portmapper). ``noacl`` avoids the NFSACL
    side protocol, which Ganesha 4.3 mishandles; ``nolock`` because the server runs no NLM.
    """
    ipaddress.ip_address(server)
    ipaddress.ip_address(client_address)
    if version == "3":
        return (f"vers=3,proto=tcp,port={nfs_port},mountport={mount_port},mountproto=tcp,"
                f"nolock,noacl,addr={server}")
    if version in ("4", "4.0", "4.1", "4.2"):
        return f"vers={version},proto=tcp,port={nfs_port},addr={server},clientaddr={client_address}"
    raise ValueError(f"NFS version {version!r} is not one of 3, 4, 4.0, 4.1, 4.2")


_EXPORT_BLOCK: Final = re.compile(r"EXPORT\s*\{(.*?)\n\}", re.DOTALL)
_SETTING: Final = re.compile(r"^\s*(\w+)\s*=\s*([^;{}]+);", re.MULTILINE)


def exports_from_published(text: str, roots: Mapping[str, Path]) -> list[Export]:
    """The exports of a published ganesha-exports.conf (what `invoke nfsroot` writes for the server), each
    served from the local folder ``roots`` maps its Path to: a test keeps its trees in a temporary folder,
    where a real server keeps them at the published Path. Id, pseudo path, access and squash are the
    published ones."""
    exports = []
    for block in _EXPORT_BLOCK.findall(text):
        settings = {key.lower(): value.strip().strip('"') for key, value in _SETTING.findall(block)}
        missing = [key for key in ("export_id", "path", "pseudo", "access_type") if key not in settings]
        if missing:
            raise ValueError(f"an EXPORT block lacks {', '.join(missing)}: {block.strip()[:200]!r}")
        path = settings["path"]
        if path not in roots:
            raise ValueError(f"the published export {path} has no local folder; roots has {sorted(roots)}")
        exports.append(Export(roots[path], settings["pseudo"], read_only=settings["access_type"].upper() == "RO",
                              export_id=int(settings["export_id"]),
                              root_squash=settings.get("squash", "").lower() not in ("no_root_squash", "none")))
    if not exports:
        raise ValueError("no EXPORT blocks in the published exports")
    return exports
