"""The Docker engine: connection, containers with the right privileges, volumes, and file transfer.

Files move through the Docker API (put_archive/get_archive) and build state lives in named
volumes, never in bind mounts of host paths, so a remote engine (tcp://, ssh://, a Docker
context) works the same as the local socket.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import tarfile
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import docker.errors
from docker.client import DockerClient, from_env
from docker.models.containers import Container
from docker.tls import TLSConfig

from bootkiln.core.lease import (
    HOLDER_LABEL,
    LABEL,
    LEASE_LABEL,
    TTL_LABEL,
    Lease,
    LeaseBook,
    hold_lease,
    lease_ttl,
    own_leases,
    read_lease_book,
)
from bootkiln.errors import EnvironmentProblem, InputError, InternalError
from bootkiln.formats.arch import ENGINE_NAMES, debian_arch

Network = Literal["host", "none"]
# Older bootkiln labelled its objects with `host:pid` only; they are still judged that way, on their host.
OWNER_LABEL = "bootkiln.owner"
DEFAULT_SOCKET = "unix:///var/run/docker.sock"

# Linux capability numbers, as /proc/<pid>/status's CapBnd bitmask orders them.
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
CAPS_REFUSED = re.compile(r"unable to apply caps(: [a-z ]+)?", re.IGNORECASE)


def missing_capabilities(status_text: str) -> list[str]:
    """Capabilities absent from the bounding set in a /proc/<pid>/status text."""
    match = re.search(r"^CapBnd:\s*([0-9a-fA-F]+)$", status_text, re.MULTILINE)
    if not match:
        return []
    bounding = int(match.group(1), 16)
    return [name for bit, name in enumerate(CAPABILITIES) if not bounding >> bit & 1]


@dataclass(frozen=True)
class Endpoint:
    url: str
    origin: str
    tls: Any = None

    @property
    def is_local(self) -> bool:
        return self.url.startswith(("unix://", "npipe://"))


def resolve_endpoint(environ: Mapping[str, str] = os.environ) -> Endpoint:
    """The engine the docker CLI would talk to: DOCKER_HOST, else DOCKER_CONTEXT or the current context."""
    if environ.get("DOCKER_HOST"):
        return Endpoint(environ["DOCKER_HOST"], "DOCKER_HOST")
    config_dir = Path(environ.get("DOCKER_CONFIG", Path.home() / ".docker"))
    name = environ.get("DOCKER_CONTEXT") or _current_context(config_dir)
    if name and name != "default":
        return _context_endpoint(config_dir, name)
    return Endpoint(DEFAULT_SOCKET, "default socket")


def _current_context(config_dir: Path) -> str | None:
    try:
        current = json.loads((config_dir / "config.json").read_text()).get("currentContext")
    except (OSError, ValueError):
        return None
    return current if isinstance(current, str) else None


def _context_endpoint(config_dir: Path, name: str) -> Endpoint:
    """Read a context as the docker CLI stores it (contexts/meta/<sha256 of name>/meta.json)."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    try:
        meta = json.loads((config_dir / "contexts" / "meta" / digest / "meta.json").read_text())
        docker_endpoint = meta["Endpoints"]["docker"]
        host = str(docker_endpoint["Host"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"Docker context {name!r} does not exist (or has no docker endpoint) in {config_dir}",
                         hint="list contexts with `docker context ls`") from None
    tls_dir = config_dir / "contexts" / "tls" / digest / "docker"
    tls = None
    if (tls_dir / "cert.pem").is_file():
        ca = tls_dir / "ca.pem"
        tls = TLSConfig(client_cert=(str(tls_dir / "cert.pem"), str(tls_dir / "key.pem")),
                        ca_cert=str(ca) if ca.is_file() else None,
                        verify=not docker_endpoint.get("SkipTLSVerify", False))
    return Endpoint(host, f"Docker context {name!r}", tls)


class _ChunkReader(io.RawIOBase):
    """A file object over the byte chunks docker-py streams, so tarfile can read without buffering all."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def split_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Complete output lines from a byte stream; carriage returns end a line too (progress meters)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        # A trailing \r may be the first half of a \r\n split across chunks: wait for more.
        held = pending.endswith(b"\r")
        *lines, pending = re.split(rb"\r\n|\n|\r", pending[:-1] if held else pending)
        if held:
            pending += b"\r"
        for line in lines:
            yield line.decode("utf-8", "replace")
    pending = pending.rstrip(b"\r")
    if pending:
        yield pending.decode("utf-8", "replace")


@dataclass(frozen=True)
class Upload:
    """A tar archive (bytes, or a file streamed from disk) to unpack at `path` before the container starts."""

    path: str
    archive: bytes | Path


def files_upload(files: dict[str, tuple[bytes, int]]) -> Upload:
    """Files for /bootkiln/ in the container, delivered through the Docker API (never bind mounts)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in sorted(files):
            data, mode = files[name]
            info = tarfile.TarInfo(f"bootkiln/{name}")
            info.size, info.mode = len(data), mode
            archive.addfile(info, io.BytesIO(data))
    return Upload("/", buffer.getvalue())


@dataclass(frozen=True)
class Reaped:
    """A container or volume removed because the build that made it is certainly dead."""

    kind: Literal["container", "volume"]
    name: str
    holder: str
    why: str


def describe_reaped(reaped: Sequence[Reaped]) -> str:
    """One line naming what was reaped, grouped by the build that owned it."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for item in reaped:
        groups[item.holder, item.why].append(f"{item.kind} {item.name}")
    owners = "; ".join(f"{', '.join(names)} of the build {holder} ({why})" for (holder, why), names in groups.items())
    return f"removed what killed bootkiln builds left on the Docker engine: {owners}"


@dataclass
class Engine:
    client: DockerClient
    endpoint: Endpoint
    warn: Callable[[str], None]
    lease: Lease | None = None
    _dropped_caps: list[str] | None = field(default=None)
    _architecture: str | None = field(default=None)
    # Stages start containers from several threads at once; the first refusal decides the fallback once.
    _caps_lock: threading.Lock = field(default_factory=threading.Lock)

    def architecture(self) -> str:
        """The Debian architecture of the engine's host: what a builder container runs natively there."""
        if self._architecture is None:
            self._architecture = self._ask_architecture()
        return self._architecture

    def _ask_architecture(self) -> str:
        # Asked once per engine: Build.builder and BuilderFactory.ensure both need it on every build.
        reported = str(self.client.info().get("Architecture", ""))
        name = debian_arch(reported)
        if name is None:
            raise EnvironmentProblem(f"the Docker engine at {self.endpoint.url} runs on {reported or 'an unnamed'} "
                                     f"architecture; bootkiln's builder runs on: {', '.join(sorted(ENGINE_NAMES))}",
                                     hint="use an engine on an x86-64 or arm64 host (DOCKER_HOST / docker context)")
        return name

    def rootless(self) -> bool:
        """Whether the engine runs without root (it cannot mount binfmt_misc or register handlers)."""
        options = self.client.info().get("SecurityOptions") or []
        return any("name=rootless" in str(option) for option in options)

    def labels(self) -> dict[str, str]:
        if self.lease is None:
            raise InternalError("a container or volume was about to be made without a lease; use connect()")
        return {LABEL: "1", **self.lease.labels()}

    # --- privileges -------------------------------------------------------------------------
    def _privilege_kwargs(self) -> dict[str, Any]:
        if self._dropped_caps is None:
            return {"privileged": True}
        # What `privileged` would give, clamped to what the daemon's host can grant (as podman does).
        return {
            "cap_add": ["ALL"],
            "cap_drop": self._dropped_caps,
            "security_opt": ["seccomp=unconfined"],
            "device_cgroup_rules": ["a *:* rwm"],
        }

    def _fall_back_to_capabilities(self, reason: str) -> None:
        if self.endpoint.is_local:
            try:
                dropped = missing_capabilities(Path("/proc/self/status").read_text())
            except OSError:
                dropped = []
        else:
            dropped = []
        self._dropped_caps = dropped or ["SYS_RESOURCE"]
        refusal = CAPS_REFUSED.search(reason)
        self.warn(
            f"the Docker engine refused a privileged container ({refusal.group(0) if refusal else reason[:80]}); "
            f"using all capabilities except {', '.join(self._dropped_caps)} instead, "
            "as the host's capability bounding set lacks them"
        )

    # --- containers -------------------------------------------------------------------------
    def _create(self, image: str, argv: Sequence[str], *, network: Network, volumes: Mapping[str, str],
                env: Mapping[str, str], name: str) -> Container:
        container: Container = self.client.containers.create(
            image,
            command=list(argv),
            entrypoint=[],
            name=name,
            network_mode=network,
            environment=dict(env),
            volumes={vol: {"bind": mount, "mode": "rw"} for vol, mount in volumes.items()},
            labels=self.labels(),
            working_dir="/",
            **self._privilege_kwargs(),
        )
        return container

    def _start(self, make: Callable[[], Container]) -> Container:
        fell_back_before = self._dropped_caps is not None
        container = make()
        try:
            container.start()
        except docker.errors.APIError as exc:
            container.remove(force=True)
            if fell_back_before or not CAPS_REFUSED.search(str(exc)):
                raise
            with self._caps_lock:
                if self._dropped_caps is None:  # another stage's container may have been refused first
                    self._fall_back_to_capabilities(str(exc.explanation or exc))
            container = make()
            container.start()
        return container

    def run(
        self,
        image: str,
        argv: Sequence[str],
        *,
        network: Network,
        on_line: Callable[[str], None],
        volumes: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        uploads: Sequence[Upload] = (),
        collect: Sequence[tuple[str, Path]] = (),
    ) -> int:
        """Run argv in a fresh container; stream its output; on success copy `collect` paths out."""
        name = f"bootkiln-{uuid.uuid4().hex[:12]}"

        def make() -> Container:
            container = self._create(image, argv, network=network, volumes=volumes or {}, env=env or {},
                                     name=name)
            for upload in uploads:
                if isinstance(upload.archive, Path):
                    with upload.archive.open("rb") as handle:
                        container.put_archive(upload.path, handle)
                else:
                    container.put_archive(upload.path, upload.archive)
            return container

        container = self._start(make)
        try:
            for line in split_lines(container.logs(stream=True, follow=True)):
                on_line(line)
            status = int(container.wait()["StatusCode"])
            if status == 0:
                for source, destination in collect:
                    self.copy_out(container, source, destination)
            return status
        finally:
            with suppress(docker.errors.APIError):
                container.remove(force=True)

    def hold(self, image: str, argv: Sequence[str], *, ready: str, uploads: Sequence[Upload] = (),
             on_line: Callable[[str], None]) -> tuple[str, str]:
        """Start argv in a privileged container that stays up; return (its name, its first `ready` line).

        For state the kernel keeps only while a container holds it (a binfmt_misc mount). The
        container carries this build's lease, so the lease's sweep removes it at exit or interrupt,
        and a reaper removes it if the build is killed.
        """
        name = f"bootkiln-hold-{uuid.uuid4().hex[:12]}"

        def make() -> Container:
            container = self._create(image, argv, network="none", volumes={}, env={}, name=name)
            for upload in uploads:
                data = upload.archive.read_bytes() if isinstance(upload.archive, Path) else upload.archive
                container.put_archive(upload.path, data)
            return container

        container = self._start(make)
        tail: list[str] = []
        stream = container.logs(stream=True, follow=True)
        try:
            for line in split_lines(stream):
                on_line(line)
                tail.append(line)
                if line.startswith(ready):
                    return name, line
        finally:
            stream.close()  # the container runs on; its log connection need not
        status = int(container.wait()["StatusCode"])
        with suppress(docker.errors.APIError):
            container.remove(force=True)
        raise HoldFailed(status, tail[-20:])

    def copy_out(self, container: Container, source: str, destination: Path) -> None:
        """Copy the contents of a container folder into `destination` on the host, streaming."""
        chunks, _ = container.get_archive(source)
        destination.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(chunks)), mode="r|") as archive:
            for member in archive:
                # The API wraps the folder itself as the top entry; keep only what is inside it.
                member.name = member.name.partition("/")[2]
                if not member.name:
                    continue
                if member.islnk():
                    member.linkname = member.linkname.partition("/")[2]
                if member.isfile() and member.size >= SPARSE_THRESHOLD:
                    _extract_sparse(archive, member, destination)
                else:
                    archive.extract(member, destination, filter="tar")

    @contextmanager
    def idle_container(self, image: str) -> Iterator[str]:
        """A container of `image` that just waits, with no network and default privileges, for checks."""
        container = self.client.containers.run(
            image, ["sleep", "infinity"], entrypoint=[], name=f"bootkiln-check-{uuid.uuid4().hex[:12]}",
            network_mode="none", labels=self.labels(), detach=True,
        )
        try:
            yield str(container.name)
        finally:
            with suppress(docker.errors.APIError):
                container.remove(force=True)

    # --- volumes ----------------------------------------------------------------------------
    @contextmanager
    def volume(self, purpose: str) -> Iterator[str]:
        """A fresh named volume for one build step, removed afterwards."""
        name = f"bootkiln-{purpose}-{uuid.uuid4().hex[:12]}"
        self.client.volumes.create(name=name, labels=self.labels())
        try:
            yield name
        finally:
            with suppress(docker.errors.APIError):
                self.client.volumes.get(name).remove(force=True)

    def reap_orphans(self) -> list[Reaped]:
        """Remove the containers and volumes of builds that are certainly dead; what was removed.

        A build made with a lease is dead when its lease lapsed, whatever host or PID namespace it ran
        in, or at once when its process is gone from our own PID namespace (see core/lease.py); a live
        lease is never reaped. Objects of older bootkiln, labelled `host:pid` only, are dead when that
        process is gone from this host; other hosts' are left alone.
        """
        # Objects first, leases after: an object is only listed once its lease record exists.
        containers = self.client.containers.list(all=True, filters={"label": LABEL})
        volumes = [volume for volume in self.client.volumes.list(filters={"label": LABEL})
                   if TTL_LABEL not in (volume.attrs.get("Labels") or {})]
        book = read_lease_book(self.client, own_leases())
        host = socket.gethostname()
        reaped: list[Reaped] = []
        for container in containers:
            verdict = _why_dead(container.labels or {}, book, host)
            if verdict and _removed(container):
                reaped.append(Reaped("container", str(container.name), *verdict))
        for volume in volumes:
            verdict = _why_dead(volume.attrs.get("Labels") or {}, book, host)
            if verdict and _removed(volume):
                reaped.append(Reaped("volume", str(volume.name), *verdict))
        for record in book.dead_records():
            with suppress(docker.errors.APIError):
                self.client.volumes.get(record.name).remove(force=True)
        return reaped

    def remove_everything(self) -> int:
        """Remove every bootkiln container and volume (for `invoke clean`)."""
        removed = 0
        for container in self.client.containers.list(all=True, filters={"label": LABEL}):
            with suppress(docker.errors.APIError):
                container.remove(force=True)
                removed += 1
        own = own_leases()
        for volume in self.client.volumes.list(filters={"label": LABEL}):
            labels = volume.attrs.get("Labels") or {}
            if TTL_LABEL in labels and labels.get(LEASE_LABEL) in own:
                continue  # this run's own lease record: removed at exit
            with suppress(docker.errors.APIError):
                volume.remove(force=True)
                removed += 1
        return removed


SPARSE_THRESHOLD = 16 << 20
SPARSE_CHUNK = 64 << 10


def _extract_sparse(archive: tarfile.TarFile, member: tarfile.TarInfo, destination: Path) -> None:
    """Write a large file with holes where it is zero: the Docker API sends disk images dense."""
    target = destination / member.name
    if target.resolve().parent != destination.resolve() / Path(member.name).parent:
        raise EnvironmentProblem(f"refusing to extract {member.name!r} outside {destination}")
    target.parent.mkdir(parents=True, exist_ok=True)
    source = archive.extractfile(member)
    assert source is not None
    zero = bytes(SPARSE_CHUNK)
    with target.open("wb") as handle:
        while chunk := source.read(SPARSE_CHUNK):
            if chunk == zero[:len(chunk)]:
                handle.seek(len(chunk), 1)
            else:
                handle.write(chunk)
        handle.truncate(member.size)
    target.chmod(member.mode & 0o7777)


def _why_dead(labels: Mapping[str, str], book: LeaseBook, host: str) -> tuple[str, str] | None:
    """(who owned it, why it is certainly dead) for an object's labels, or None if it may be in use."""
    if labels.get(LEASE_LABEL):
        why = book.why_dead(labels[LEASE_LABEL])
        return (labels.get(HOLDER_LABEL, "?"), why) if why else None
    owner = labels.get(OWNER_LABEL, "")
    if _is_dead_owner(owner, host):
        return owner, "its process is gone from this host"
    return None


def _removed(item: Any) -> bool:
    """Remove a container or volume; False if that failed (in use, or removed meanwhile)."""
    try:
        item.remove(force=True)
    except docker.errors.APIError:
        return False
    return True


def _is_dead_owner(owner: str, host: str) -> bool:
    owner_host, _, pid = owner.rpartition(":")
    if owner_host != host or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def connect(warn: Callable[[str], None], environ: Mapping[str, str] = os.environ) -> Engine:
    """Connect to the engine the docker CLI would use, or say exactly how to get one."""
    endpoint = resolve_endpoint(environ)
    ttl = lease_ttl(environ)
    try:
        if endpoint.origin == "DOCKER_HOST":
            client = from_env(environment=dict(environ), use_ssh_client=endpoint.url.startswith("ssh://"))
        else:
            client = DockerClient(base_url=endpoint.url, tls=endpoint.tls,
                                         use_ssh_client=endpoint.url.startswith("ssh://"))
        client.ping()
    except Exception as exc:  # docker-py raises several unrelated types for "cannot connect"
        raise EnvironmentProblem(
            f"no Docker engine is reachable at {endpoint.url} ({endpoint.origin}): {engine_message(exc)}",
            hint="start one (`sudo systemctl start docker`, or on a host without systemd "
            "`sudo dockerd --bridge=none --iptables=false --ip6tables=false &`), "
            "or point DOCKER_HOST / `docker context use` at a running engine; tools/setup-host.sh does it all",
        ) from None
    engine = Engine(client=client, endpoint=endpoint, warn=warn)
    try:
        # The lease exists before anything is made under it, and before this run reaps others.
        engine.lease = hold_lease(client, endpoint.url, ttl, warn)
        reaped = engine.reap_orphans()
    except docker.errors.APIError as exc:
        raise EnvironmentProblem(
            f"the Docker engine at {endpoint.url} refused a request: {engine_message(exc)}") from None
    if reaped:
        warn(describe_reaped(reaped))
    return engine


# The engine's messages are one or two sentences; a page of text is some proxy's HTML error page.
MESSAGE_LIMIT = 1000


class HoldFailed(Exception):
    """A held container exited before it said it was ready."""

    def __init__(self, status: int, tail: list[str]) -> None:
        super().__init__(f"exited with status {status}")
        self.status = status
        self.tail = tail


def engine_message(exc: BaseException) -> str:
    """The engine's message whole, on one line; only a very long one is cut, after a sentence, saying so."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) <= MESSAGE_LIMIT:
        return text
    cut = text[:MESSAGE_LIMIT]
    boundary = max(cut.rfind(". "), cut.rfind("; "), cut.rfind(": "), cut.rfind(") "))
    if boundary > MESSAGE_LIMIT // 2:
        cut = cut[:boundary + 1]
    return f"{cut} [{len(text) - len(cut):,} more characters of the engine's message left out]"
