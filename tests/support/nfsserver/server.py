"""The server process pair (rpcbind in private namespaces, ganesha.nfsd on loopback) and its lifecycle."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import fcntl
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from tests.support.nfsserver.config import (
    DEFAULT_MOUNT_PORT,
    DEFAULT_NFS_PORT,
    GUEST_ADDRESS,
    HOST_ADDRESS_FROM_GUEST,
    Export,
    NfsVersion,
    _check_config_path,
    _check_port,
    _check_protocols,
    ganesha_config,
    mount_options,
)
from tests.support.nfsserver.errors import NfsEnvironmentError, NfsServerError, NfsStartError
from tests.support.nfsserver.rpc import NFS_PROGRAM, mount_export_list, rpc_call

_SBIN_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_FSAL_VFS_GLOBS: Final = (
    "/usr/lib/*-linux-gnu*/ganesha/libfsalvfs.so",  # Debian, Ubuntu (multiarch)
    "/usr/lib64/ganesha/libfsalvfs.so",  # Fedora, RHEL
    "/usr/lib/ganesha/libfsalvfs.so",
)
# Debian package -> the files that prove it is installed ("fsal:vfs" is looked up with _FSAL_VFS_GLOBS).
REQUIRED_PACKAGES: Final[dict[str, tuple[str, ...]]] = {
    "nfs-ganesha": ("ganesha.nfsd",),
    "nfs-ganesha-vfs": ("fsal:vfs",),
    "rpcbind": ("rpcbind",),
    "util-linux": ("unshare", "nsenter", "setpriv"),
    "mount": ("mount",),
    "iproute2": ("ip",),
}

# Runs as PID 1 of the private namespaces: /run becomes <workdir>/run, lo comes up (rpcbind wants a loopback),
# then rpcbind runs in the foreground as a child, NOT exec'd: rpcbind drops to the _rpc user, which clears a
# parent-death signal, whereas this shell keeps the SIGKILL that unshare --kill-child arranges, and when PID 1 of a
# PID namespace dies the kernel kills the rest. A constant script: the values arrive as "$1" and "$2".
_RPCBIND_SCRIPT: Final = 'set -e; mount --bind "$1" /run; ip link set lo up; "$2" -f'

# Ganesha starts even when an export fails (it just leaves it out), so its log is read after start: every config
# complaint and every CRIT/MAJ/FATAL line is an error, except the ones every start here logs, which are harmless:
# no D-Bus system bus (on purpose), and the Kerberos callback credential a GSSAPI build always tries to get.
_LOG_PROBLEM_RE: Final = re.compile(r"config_errs_to_log| :(CRIT|MAJ|FATAL) :")
_LOG_HARMLESS_RE: Final = re.compile(r" :DBUS :CRIT :|gssd_refresh_krb5_machine_credential")


def _which(name: str) -> str | None:
    return shutil.which(name, path=_SBIN_PATH + ":" + os.environ.get("PATH", ""))


def _fsal_vfs() -> Path | None:
    for pattern in _FSAL_VFS_GLOBS:
        for match in sorted(Path("/").glob(pattern.lstrip("/"))):
            return match
    return None


def missing_packages() -> list[str]:
    """The Debian packages from :data:`REQUIRED_PACKAGES` that this machine lacks (checked by their files)."""
    missing = []
    for package, needs in REQUIRED_PACKAGES.items():
        for need in needs:
            found = _fsal_vfs() is not None if need == "fsal:vfs" else _which(need) is not None
            if not found:
                missing.append(package)
                break
    return missing


def _port_free(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Ganesha does: TIME_WAIT is no conflict
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _free_port(address: str, avoid: set[int]) -> int:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port
    raise NfsEnvironmentError(f"could not find a free TCP port on {address}")


def _accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def _unix_accepts(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (scans /proc; needs no CONFIG_PROC_CHILDREN)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces and parentheses, so split after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            kids.append(int(entry.name))
    return kids


def _tail(path: Path, n: int) -> list[str]:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * max(n, 1)))
            data = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    return data.splitlines()[-n:] if n > 0 else []


def _is_within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


class NfsServer:
    """NFS-Ganesha plus a private rpcbind, serving ``exports`` on ``bind_address`` until stopped.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`)::

        with NfsServer([Export(root, "/srv/nfsroot", read_only=False)], workdir=tmp / "nfs") as nfs:
            boot_guest(f"mount -t nfs -o {nfs.mount_options('4.1')} 10.0.2.2:/srv/nfsroot /mnt")

    ``workdir`` is created if needed and holds ganesha.conf, ganesha.log, rpcbind.log and, while running, the
    private ``run/`` and NFSv4 ``recovery/`` state (removed on stop; the config and logs are kept). A port of 0
    picks a free port; read the real one from :attr:`nfs_port` / :attr:`mount_port` after start. Two servers can
    run at once if they have different ports and workdirs.
    """

    def __init__(
        self,
        exports: Sequence[Export],
        *,
        workdir: Path,
        nfs_port: int = DEFAULT_NFS_PORT,
        mount_port: int = DEFAULT_MOUNT_PORT,
        protocols: Sequence[int] = (3, 4),
        bind_address: str = "127.0.0.1",
        clients: Sequence[str] = ("127.0.0.1",),
        graceless: bool = True,
        start_timeout: float = 30.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.exports = tuple(exports)
        self.protocols = _check_protocols(protocols)
        _check_port(nfs_port, "nfs_port")
        _check_port(mount_port, "mount_port")
        if nfs_port and nfs_port == mount_port:
            raise ValueError(f"nfs_port and mount_port are both {nfs_port}")
        ipaddress.ip_address(bind_address)
        self.workdir = Path(workdir).resolve()
        _check_config_path(self.workdir, "workdir")
        self.bind_address = bind_address
        self.clients = tuple(clients)
        self.graceless = graceless
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._requested_ports = (nfs_port, mount_port)
        self.nfs_port = nfs_port
        self.mount_port = mount_port
        # Verify everything before running anything: this raises ValueError on a bad export.
        ganesha_config(self.exports, nfs_port=nfs_port or 1, mount_port=mount_port or 2, protocols=self.protocols,
                       bind_address=bind_address, clients=self.clients)
        for export in self.exports:
            if not export.path.is_dir():
                raise ValueError(f"export path {export.path} is not an existing directory")
            real = export.path.resolve()
            if _is_within(real, Path("/run")):
                raise ValueError(f"export path {export.path} is under /run, which the server replaces with a "
                                 "private directory: export it from somewhere else")
        for inner in self.exports:  # a nested pseudo path is a mount point: it must exist in the outer export
            for outer in self.exports:
                if inner.pseudo.startswith(outer.pseudo + "/"):
                    mount_point = outer.path / inner.pseudo[len(outer.pseudo) + 1 :]
                    if not mount_point.is_dir():
                        raise ValueError(f"export {inner.pseudo} sits inside export {outer.pseudo}, so {mount_point} "
                                         "must be an existing directory (Ganesha cannot create it)")
        if _is_within(self.workdir, Path("/run")):
            raise ValueError(f"workdir {self.workdir} is under /run, which the server replaces: use another one")
        # Ganesha wants real paths (it matches them against the mount table): symlinks resolved.
        self.exports = tuple(dataclasses.replace(e, path=e.path.resolve()) for e in self.exports)
        self._lock_fd: int | None = None
        self._rpcbind: subprocess.Popen[bytes] | None = None
        self._ganesha: subprocess.Popen[bytes] | None = None

    # Paths -----------------------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.workdir / "ganesha.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "ganesha.log"

    @property
    def rpcbind_log_path(self) -> Path:
        return self.workdir / "rpcbind.log"

    @property
    def _run_dir(self) -> Path:
        return self.workdir / "run"

    @property
    def _recovery_dir(self) -> Path:
        return self.workdir / "recovery"

    # Public API ------------------------------------------------------------------------------------------
    def mount_options(self, version: NfsVersion = "3", *, server: str = HOST_ADDRESS_FROM_GUEST,
                      client_address: str = GUEST_ADDRESS) -> str:
        """:func:`mount_options` for this server's (resolved) ports."""
        return mount_options(version, server=server, nfs_port=self.nfs_port, mount_port=self.mount_port,
                             client_address=client_address)

    def log_tail(self, n: int = 30) -> list[str]:
        """The last ``n`` lines of ganesha.log (then of ganesha's own stderr, where early failures land)."""
        return _tail(self.log_path, n) + _tail(self.workdir / "ganesha.stderr", n)

    @property
    def running(self) -> bool:
        return (self._ganesha is not None and self._ganesha.poll() is None
                and self._rpcbind is not None and self._rpcbind.poll() is None)

    @property
    def pids(self) -> dict[str, int]:
        """PIDs of the processes this server started (ganesha.nfsd, and unshare, the parent of rpcbind)."""
        found = {}
        if self._ganesha is not None:
            found["ganesha.nfsd"] = self._ganesha.pid
        if self._rpcbind is not None:
            found["unshare(rpcbind)"] = self._rpcbind.pid
        return found

    def wait(self, timeout: float | None = None) -> int:
        """Block until ganesha.nfsd exits (for ``invoke nfs-serve``: Ctrl-C, then the with-block stops it)."""
        if self._ganesha is None:
            raise NfsServerError("the server is not started")
        return self._ganesha.wait(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        if self._lock_fd is not None:
            raise NfsServerError("this NfsServer is already started")
        self._check_environment()
        self.workdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.workdir / "nfsserver.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise NfsEnvironmentError(f"another NfsServer is running in {self.workdir}",
                                      "give each server its own workdir") from None
        self._lock_fd = fd
        try:
            self._start_locked()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop ganesha.nfsd (SIGTERM, then SIGKILL), then rpcbind; remove run/ and recovery/. Idempotent."""
        try:
            if self._ganesha is not None:
                self._terminate(self._ganesha, [self._ganesha.pid], self.stop_timeout)
        finally:
            try:
                if self._rpcbind is not None:
                    # SIGTERM reaches rpcbind itself (unshare blocks it; the namespace's PID 1 shell ignores it).
                    rpcbind_pids = [k for sh in _children(self._rpcbind.pid) for k in _children(sh)]
                    self._terminate(self._rpcbind, rpcbind_pids, 5.0)
            finally:
                self._ganesha = None
                self._rpcbind = None
                for state in (self._run_dir, self._recovery_dir):
                    shutil.rmtree(state, ignore_errors=True)
                if self._lock_fd is not None:
                    os.close(self._lock_fd)
                    self._lock_fd = None

    # Internals -------------------------------------------------------------------------------------------
    def _check_environment(self) -> None:
        missing = missing_packages()
        if missing:
            raise NfsEnvironmentError(f"missing Debian packages: {' '.join(missing)}",
                                      f"apt-get install --no-install-recommends {' '.join(missing)}")
        if os.geteuid() != 0:
            raise NfsEnvironmentError("the NFS server needs root (namespaces, bind mounts, open_by_handle_at)",
                                      "run the tests or 'invoke nfs-serve' as root")

    def _resolve_ports(self) -> None:
        nfs_port, mount_port = self._requested_ports
        taken: set[int] = set()
        if nfs_port == 0:
            nfs_port = _free_port(self.bind_address, taken)
        taken.add(nfs_port)
        if mount_port == 0:
            mount_port = _free_port(self.bind_address, taken)
        self.nfs_port, self.mount_port = nfs_port, mount_port
        for port, what in self._ports():
            if not _port_free(self.bind_address, port):
                raise NfsEnvironmentError(
                    f"{what} port {self.bind_address}:{port} is already in use",
                    f"see who holds it ('ss -ltnp sport = :{port}'), or pass a different port (0 picks a free one)")

    def _ports(self) -> list[tuple[int, str]]:
        ports = [(self.nfs_port, "NFS")]
        if 3 in self.protocols:
            ports.append((self.mount_port, "MOUNT"))
        return ports

    def _start_locked(self) -> None:
        for state in (self._run_dir, self._recovery_dir):  # stale state from a killed run
            shutil.rmtree(state, ignore_errors=True)
        self._run_dir.mkdir(mode=0o755)
        self._recovery_dir.mkdir(mode=0o755)
        self._resolve_ports()
        fsal = _fsal_vfs()
        self.config_path.write_text(ganesha_config(
            self.exports, nfs_port=self.nfs_port, mount_port=self.mount_port, protocols=self.protocols,
            bind_address=self.bind_address, clients=self.clients, recovery_root=self._recovery_dir,
            plugins_dir=fsal.parent if fsal else None, graceless=self.graceless))
        self.log_path.unlink(missing_ok=True)
        env = dict(os.environ, PATH=_SBIN_PATH, LC_ALL="C")
        deadline = time.monotonic() + self.start_timeout

        self._rpcbind = self._spawn(self._rpcbind_argv(), self.rpcbind_log_path, env)
        socket_path = self._run_dir / "rpcbind.sock"
        while not _unix_accepts(socket_path):
            if self._rpcbind.poll() is not None:
                raise NfsStartError(f"rpcbind exited with status {self._rpcbind.returncode} before it was ready",
                                    _tail(self.rpcbind_log_path, 30),
                                    "unshare needs CAP_SYS_ADMIN: run as root on the host, or in a container "
                                    "with --cap-add SYS_ADMIN")
            if time.monotonic() > deadline:
                raise NfsStartError(f"rpcbind did not listen on {socket_path} within {self.start_timeout:g}s",
                                    _tail(self.rpcbind_log_path, 30))
            time.sleep(0.05)

        self._ganesha = self._spawn(self._ganesha_argv(), self.workdir / "ganesha.stderr", env)
        waiting = self._ports()
        while waiting:
            if self._ganesha.poll() is not None:
                raise NfsStartError(f"ganesha.nfsd exited with status {self._ganesha.returncode} while starting "
                                    f"(config: {self.config_path})", self._problems() or self.log_tail())
            if time.monotonic() > deadline:
                names = ", ".join(f"{what} {self.bind_address}:{port}" for port, what in waiting)
                raise NfsStartError(f"ganesha.nfsd did not accept TCP connections on {names} within "
                                    f"{self.start_timeout:g}s", self.log_tail())
            waiting = [(port, what) for port, what in waiting if not _accepts(self.bind_address, port)]
            if waiting:
                time.sleep(0.1)
        try:  # the listeners are up; make sure the dispatcher answers too (NFS NULL procedure)
            rpc_call(self.bind_address, self.nfs_port, NFS_PROGRAM, max(self.protocols), 0,
                     timeout=max(1.0, deadline - time.monotonic()))
        except NfsServerError as exc:
            raise NfsStartError(f"ganesha.nfsd accepts connections but does not answer NFS: {exc}",
                                self.log_tail()) from exc
        self._check_started()

    def _problems(self) -> list[str]:
        return [line for line in _tail(self.log_path, 2000)
                if _LOG_PROBLEM_RE.search(line) and not _LOG_HARMLESS_RE.search(line)]

    def _check_started(self) -> None:
        problems = self._problems()
        if problems:
            hint = f"read {self.log_path} and {self.config_path}"
            if any("Operation not supported" in line for line in problems):
                hint = ("an export is on a filesystem without NFS file handles (overlayfs, such as a container's "
                        "root filesystem): export a directory on ext4, xfs, btrfs or tmpfs")
            raise NfsStartError("ganesha.nfsd reported errors", problems, hint)
        if 3 in self.protocols:
            listed = mount_export_list(self.bind_address, self.mount_port)
            absent = [e.pseudo for e in self.exports if e.pseudo not in listed]
            if absent:
                raise NfsStartError(f"ganesha.nfsd is up but does not export {absent} (it lists {listed})",
                                    self.log_tail(), f"read {self.log_path}")

    def _rpcbind_argv(self) -> list[str]:
        # setpriv: if this Python dies, unshare gets SIGKILL; --kill-child: then its child, the namespace's PID 1
        # shell, gets SIGKILL, and the kernel kills the rest of the PID namespace: rpcbind.
        return [_must("setpriv"), "--pdeathsig", "KILL", "--",
                _must("unshare"), "--mount", "--net", "--pid", "--kill-child=KILL", "--propagation", "private",
                "--", "/bin/sh", "-c", _RPCBIND_SCRIPT, "nfsserver-rpcbind", str(self._run_dir), _must("rpcbind")]

    def _ganesha_argv(self) -> list[str]:
        assert self._rpcbind is not None
        # unshare did unshare(2) itself before forking, so its PID names the private mount namespace. nsenter
        # and setpriv exec (no fork), so the PID we hold is ganesha.nfsd's; it gets SIGTERM if this Python dies.
        return [_must("setpriv"), "--pdeathsig", "TERM", "--",
                _must("nsenter"), f"--target={self._rpcbind.pid}", "--mount", "--",
                _must("ganesha.nfsd"), "-F", "-L", str(self.log_path), "-f", str(self.config_path),
                "-p", str(self._run_dir / "ganesha.pid"), "-N", "NIV_EVENT"]

    @staticmethod
    def _spawn(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            # Its own session: a Ctrl-C meant for Python must not kill the daemons behind our back. Forked from
            # the long-lived spawner thread: the parent-death signal fires when the forking THREAD exits.
            return _spawner().submit(subprocess.Popen, argv, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True).result()

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes], pids: list[int], timeout: float) -> None:
        if proc.poll() is None:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
                return
            except subprocess.TimeoutExpired:
                pass
            proc.kill()
        proc.wait()


_SPAWNER: concurrent.futures.ThreadPoolExecutor | None = None
_SPAWNER_LOCK = threading.Lock()


def _spawner() -> concurrent.futures.ThreadPoolExecutor:
    """One thread that forks every daemon and lives as long as the interpreter.

    The daemons get a parent-death signal (setpriv --pdeathsig), and Linux sends it when the thread that forked
    them exits, not the process. Forking from a short-lived thread (a thread that calls start() and returns, an
    asyncio.to_thread) would kill the server as that thread ends.
    """
    global _SPAWNER
    with _SPAWNER_LOCK:
        if _SPAWNER is None:
            _SPAWNER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="nfsserver-spawn")
        return _SPAWNER


def _must(name: str) -> str:
    found = _which(name)
    if found is None:
        raise NfsEnvironmentError(f"{name} not found on PATH or in /usr/sbin, /sbin", "see missing_packages()")
    return found
