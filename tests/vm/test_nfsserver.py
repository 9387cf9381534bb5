"""Tests for nfsserver.py. The first group is pure (no root, milliseconds); the `live` group starts real servers
(root and the Debian packages; about a second each) and talks to them with the module's own RPC client."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.conftest import component_missing
from tests.support import nfsserver
from tests.support.nfsserver import Export, NfsServer

# -- pure ---------------------------------------------------------------------------------------------------------


def test_config_serves_each_export_to_loopback_only(tmp_path: Path) -> None:
    text = nfsserver.ganesha_config(
        [Export(tmp_path, "/srv/root", read_only=False), Export(tmp_path / "usr", "/srv/root/usr")],
        recovery_root=tmp_path / "recovery",
    )
    assert "Bind_Addr = 127.0.0.1;" in text
    assert "NFS_Port = 2049;" in text and "MNT_Port = 20048;" in text
    assert "Protocols = 3, 4;" in text
    for line in ("Enable_UDP = false;", "Enable_NLM = false;", "Enable_RQUOTA = false;", "mount_path_pseudo = true;",
                 "Graceless = true;", "Only_Numeric_Owners = true;", f'RecoveryRoot = "{tmp_path}/recovery";'):
        assert line in text
    blocks = text.split("EXPORT {")[1:]
    assert len(blocks) == 2
    assert "Export_Id = 1;" in blocks[0] and 'Pseudo = "/srv/root";' in blocks[0]
    assert "Access_Type = RW;" in blocks[0] and "Access_Type = RO;" in blocks[1]
    for block in blocks:
        assert "Access_Type = None;" in block  # everyone not in CLIENT
        assert "Clients = 127.0.0.1;" in block
        assert "Squash = No_Root_Squash;" in block
    assert text.count("{") == text.count("}")


def test_config_numbers_exports_around_explicit_ids(tmp_path: Path) -> None:
    exports = [Export(tmp_path, "/a"), Export(tmp_path, "/b", export_id=1), Export(tmp_path, "/c")]
    text = nfsserver.ganesha_config(exports)
    ids = [line.strip() for line in text.splitlines() if "Export_Id" in line]
    assert ids == ["Export_Id = 2;", "Export_Id = 1;", "Export_Id = 3;"]


def test_config_v4_only_has_no_mount_port_and_options_follow(tmp_path: Path) -> None:
    text = nfsserver.ganesha_config([Export(tmp_path, "/a", root_squash=True)], protocols=(4,), nfs_port=3049,
                                    clients=("10.0.0.0/8", "127.0.0.1"), graceless=False)
    assert "MNT_Port" not in text
    assert "Protocols = 4;" in text and "NFS_Port = 3049;" in text
    assert "Squash = Root_Squash;" in text and "Graceless = false;" in text
    assert "Clients = 10.0.0.0/8, 127.0.0.1;" in text


@pytest.mark.parametrize(
    ("exports", "match"),
    [
        ([], "no exports"),
        ([Export(Path("/srv"), "srv")], "pseudo path"),
        ([Export(Path("/srv"), "/")], "pseudo path"),
        ([Export(Path("/srv"), "/a/../b")], "pseudo path"),
        ([Export(Path("/srv"), "/a b")], "pseudo path"),
        ([Export(Path("/srv"), "/a"), Export(Path("/tmp"), "/a")], "used by two"),
        ([Export(Path("relative"), "/a")], "absolute"),
        ([Export(Path('/tmp/quo"te'), "/a")], "quote"),
        ([Export(Path("/tmp/new\nline"), "/a")], "control"),
        ([Export(Path("/srv"), "/a", export_id=0)], "out of range"),
        ([Export(Path("/srv"), "/a", export_id=5), Export(Path("/srv"), "/b", export_id=5)], "duplicate"),
    ],
)
def test_config_rejects_bad_exports(exports: list[Export], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        nfsserver.ganesha_config(exports)


def test_config_rejects_bad_options(tmp_path: Path) -> None:
    exports = [Export(tmp_path, "/a")]
    with pytest.raises(ValueError, match="subset"):
        nfsserver.ganesha_config(exports, protocols=(2,))
    with pytest.raises(ValueError):
        nfsserver.ganesha_config(exports, bind_address="localhost")
    with pytest.raises(ValueError):
        nfsserver.ganesha_config(exports, clients=("*",))
    with pytest.raises(ValueError, match="needs the real port"):
        nfsserver.ganesha_config(exports, nfs_port=0)


def test_mount_options() -> None:
    assert nfsserver.mount_options("3") == (
        "vers=3,proto=tcp,port=2049,mountport=20048,mountproto=tcp,nolock,noacl,addr=10.0.2.2")
    assert nfsserver.mount_options("4.1", nfs_port=3049) == (
        "vers=4.1,proto=tcp,port=3049,addr=10.0.2.2,clientaddr=10.0.2.15")
    with pytest.raises(ValueError):
        nfsserver.mount_options("2")  # type: ignore[arg-type]


def test_server_checks_inputs_before_running_anything(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    with pytest.raises(ValueError, match="not an existing directory"):
        NfsServer([Export(tmp_path / "missing", "/a")], workdir=tmp_path / "w")
    with pytest.raises(ValueError, match="under /run"):
        NfsServer([Export(tmp_path / "root", "/a")], workdir=Path("/run/nfs"))
    with pytest.raises(ValueError, match="must be an existing directory"):  # nested pseudo needs its mount point
        NfsServer([Export(tmp_path / "root", "/r"), Export(tmp_path, "/r/usr")], workdir=tmp_path / "w")
    assert not (tmp_path / "w").exists()


# -- live ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def live() -> None:
    why = "not root" if os.geteuid() != 0 else ", ".join(nfsserver.missing_packages())
    if why:
        component_missing("NFS-Ganesha server", why)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.usefixtures("live")
def test_live_serves_exports_and_cleans_up(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    exports = [Export(tmp_path / "a", "/srv/a", read_only=False), Export(tmp_path / "b", "/srv/b")]
    with NfsServer(exports, workdir=tmp_path / "w", nfs_port=0, mount_port=0) as server:
        assert server.running
        assert server.nfs_port != 0 and server.mount_port != 0
        assert sorted(nfsserver.mount_export_list("127.0.0.1", server.mount_port)) == ["/srv/a", "/srv/b"]
        for version in (3, 4):
            assert nfsserver.rpc_call("127.0.0.1", server.nfs_port, nfsserver.NFS_PROGRAM, version, 0) == b""
        assert nfsserver.mount_status("/srv/a", port=server.mount_port) == 0
        assert nfsserver.mount_status("/srv/nope", port=server.mount_port) == 13  # Ganesha: EACCES, not NOENT
        # Only Clients = 127.0.0.1 may mount (slirp connects from there); another loopback address may not.
        assert nfsserver.mount_status("/srv/a", port=server.mount_port, source="127.0.0.2") == 13  # MNT3ERR_ACCES
        with pytest.raises(nfsserver.NfsServerError, match="PROG_MISMATCH"):
            nfsserver.rpc_call("127.0.0.1", server.nfs_port, nfsserver.NFS_PROGRAM, 2, 0)
        pids = list(server.pids.values())
        assert "config_errs_to_log" not in server.log_path.read_text()
    assert not [pid for pid in pids if _alive(pid)]
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == [
        "ganesha.conf", "ganesha.log", "ganesha.stderr", "nfsserver.lock", "rpcbind.log"]
    with socket.socket() as sock:  # the port is free again
        sock.bind(("127.0.0.1", server.nfs_port))


@pytest.mark.usefixtures("live")
def test_live_stops_when_the_with_block_raises(tmp_path: Path) -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"), NfsServer([Export(tmp_path, "/a")], workdir=tmp_path / "w",
                                                                nfs_port=0, mount_port=0) as server:
        pids = list(server.pids.values())
        raise RuntimeError("boom")
    assert pids
    assert not [pid for pid in pids if _alive(pid)]


@pytest.mark.usefixtures("live")
def test_live_refuses_a_taken_port_and_a_busy_workdir(tmp_path: Path) -> None:
    with NfsServer([Export(tmp_path, "/a")], workdir=tmp_path / "w1", nfs_port=0, mount_port=0) as first:
        with pytest.raises(nfsserver.NfsEnvironmentError, match="already in use"):
            NfsServer([Export(tmp_path, "/a")], workdir=tmp_path / "w2", nfs_port=first.nfs_port, mount_port=0).start()
        with pytest.raises(nfsserver.NfsEnvironmentError, match="another NfsServer"):
            NfsServer([Export(tmp_path, "/a")], workdir=tmp_path / "w1", nfs_port=0, mount_port=0).start()
        assert first.running
