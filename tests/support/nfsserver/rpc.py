"""Just enough ONC RPC over TCP to ask a running server's MOUNT and NFS programs whether they answer."""

from __future__ import annotations

import os
import socket
import struct
from typing import Final

from tests.support.nfsserver.config import DEFAULT_MOUNT_PORT
from tests.support.nfsserver.errors import NfsServerError

# A minimal ONC RPC client (RFC 5531, XDR per RFC 4506, TCP record marking), so the host can check that the
# server really speaks NFS and MOUNT without a kernel NFS client (the build hosts have none).
NFS_PROGRAM: Final = 100003
MOUNT_PROGRAM: Final = 100005


def _xdr_uint(value: int) -> bytes:
    return struct.pack(">I", value)


def _xdr_opaque(data: bytes) -> bytes:
    return _xdr_uint(len(data)) + data + b"\0" * (-len(data) % 4)


class _XdrReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def uint(self) -> int:
        if self.pos + 4 > len(self.data):
            raise NfsServerError("truncated RPC reply")
        (value,) = struct.unpack_from(">I", self.data, self.pos)
        self.pos += 4
        return int(value)

    def opaque(self) -> bytes:
        size = self.uint()
        data = self.data[self.pos : self.pos + size]
        if len(data) != size:
            raise NfsServerError("truncated RPC reply")
        self.pos += size + (-size % 4)
        return data


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            raise NfsServerError("the RPC server closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def rpc_call(address: str, port: int, program: int, version: int, procedure: int, args: bytes = b"", *,
             timeout: float = 5.0, source: str | None = None) -> bytes:
    """One ONC RPC call over TCP with AUTH_SYS root credentials; returns the XDR results. Raises NfsServerError.

    ``source`` binds the client end to that address (127.0.0.2, say, to check that other clients are refused).
    """
    xid = int.from_bytes(os.urandom(4), "big")
    cred = _xdr_uint(0) + _xdr_opaque(b"nfsserver") + _xdr_uint(0) + _xdr_uint(0) + _xdr_uint(0)
    call = (_xdr_uint(xid) + _xdr_uint(0) + _xdr_uint(2) + _xdr_uint(program) + _xdr_uint(version)
            + _xdr_uint(procedure) + _xdr_uint(1) + _xdr_opaque(cred) + _xdr_uint(0) + _xdr_opaque(b"") + args)
    try:
        with socket.create_connection((address, port), timeout, (source, 0) if source else None) as sock:
            sock.sendall(_xdr_uint(0x80000000 | len(call)) + call)
            reply = b""
            while True:
                (mark,) = struct.unpack(">I", _recv_exact(sock, 4))
                reply += _recv_exact(sock, mark & 0x7FFFFFFF)
                if mark & 0x80000000:
                    break
    except OSError as exc:
        raise NfsServerError(f"RPC {program}/{version}/{procedure} to {address}:{port} failed: {exc}") from exc
    reader = _XdrReader(reply)
    if reader.uint() != xid or reader.uint() != 1:
        raise NfsServerError("RPC reply with a foreign XID or not a REPLY")
    if reader.uint() != 0:
        raise NfsServerError(f"RPC {program}/{version}/{procedure} to {address}:{port} was denied")
    reader.uint()  # verifier flavor
    reader.opaque()
    accept = reader.uint()
    if accept != 0:
        names = {1: "PROG_UNAVAIL", 2: "PROG_MISMATCH", 3: "PROC_UNAVAIL", 4: "GARBAGE_ARGS", 5: "SYSTEM_ERR"}
        raise NfsServerError(f"RPC {program}/{version}/{procedure} to {address}:{port}: {names.get(accept, accept)}")
    return reply[reader.pos :]


def mount_status(path: str, address: str = "127.0.0.1", port: int = DEFAULT_MOUNT_PORT, *,
                 source: str | None = None) -> int:
    """MOUNTPROC3_MNT of ``path``: 0 if this client may mount it, else the MNT3ERR code.

    Ganesha answers 13 (EACCES) both to a client not in ``clients`` and for a path it does not export.
    """
    return _XdrReader(rpc_call(address, port, MOUNT_PROGRAM, 3, 1, _xdr_opaque(path.encode()), source=source)).uint()


def mount_export_list(address: str = "127.0.0.1", port: int = DEFAULT_MOUNT_PORT) -> list[str]:
    """The paths the server's MOUNT v3 service lists (MOUNTPROC3_EXPORT): the pseudo paths, for Ganesha here."""
    reader = _XdrReader(rpc_call(address, port, MOUNT_PROGRAM, 3, 5))
    paths = []
    while reader.uint():  # value follows
        paths.append(reader.opaque().decode())
        while reader.uint():  # groups
            reader.opaque()
    return paths
