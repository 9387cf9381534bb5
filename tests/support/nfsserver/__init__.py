"""A real, private, userspace NFS server (NFS-Ganesha) on the host's loopback, for diskless boots in QEMU.

The kernel on the build hosts has no nfsd, so this runs NFS-Ganesha with its VFS FSAL. Ganesha will not start
without an rpcbind to register with, and a plain rpcbind listens on 0.0.0.0:111 and owns the host-wide
/run/rpcbind.sock. So each server gets:

* an rpcbind in private network, mount and PID namespaces, where ``/run`` is a bind mount of ``<workdir>/run``:
  it listens on nothing outside the namespace, and its socket is ``<workdir>/run/rpcbind.sock``;
* a ganesha.nfsd that joins only that mount namespace (so it finds that socket at /run/rpcbind.sock and keeps
  its pid file, blkid cache and Kerberos ccache under ``<workdir>/run``, and sees no D-Bus system bus) but stays
  in the host's network namespace, listening on 127.0.0.1 where QEMU's user networking (slirp) reaches it as
  10.0.2.2.

A guest cannot reach that rpcbind, so it mounts with explicit ports; :func:`mount_options` builds the options.
Both daemons are started with a parent-death signal, so even a SIGKILLed Python leaves nothing running.

Requires root (namespaces, bind mounts, open_by_handle_at), the Debian packages in :data:`REQUIRED_PACKAGES`, and
export directories on a filesystem that supports file handles (ext4, xfs, btrfs, tmpfs; not overlayfs).
"""

from __future__ import annotations

from tests.support.nfsserver.config import (
    DEFAULT_MOUNT_PORT,
    DEFAULT_NFS_PORT,
    GUEST_ADDRESS,
    HOST_ADDRESS_FROM_GUEST,
    Export,
    NfsVersion,
    exports_from_published,
    ganesha_config,
    mount_options,
)
from tests.support.nfsserver.errors import NfsEnvironmentError, NfsServerError, NfsStartError
from tests.support.nfsserver.rpc import NFS_PROGRAM, mount_export_list, mount_status, rpc_call
from tests.support.nfsserver.server import (
    REQUIRED_PACKAGES,
    NfsServer,
    missing_packages,
)

__all__ = [
    "DEFAULT_MOUNT_PORT",
    "DEFAULT_NFS_PORT",
    "GUEST_ADDRESS",
    "HOST_ADDRESS_FROM_GUEST",
    "NFS_PROGRAM",
    "REQUIRED_PACKAGES",
    "Export",
    "NfsEnvironmentError",
    "NfsServer",
    "NfsServerError",
    "NfsStartError",
    "NfsVersion",
    "exports_from_published",
    "ganesha_config",
    "missing_packages",
    "mount_export_list",
    "mount_options",
    "mount_status",
    "rpc_call",
]
