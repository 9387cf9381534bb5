"""The diskless client tree, checked with testinfra as the client sees it (its root plus the server's /usr)."""

from __future__ import annotations

import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import testinfra

from bootkiln.core.engine import Engine
from tests.fixtures import DisklessBuild, invoke


def client_view(nfsroot: Path, rootfs: Path, destination: Path) -> None:
    """The client's tree with /usr filled from the server's, as the initramfs mounts it."""
    with tarfile.open(destination, "w", format=tarfile.PAX_FORMAT) as view:
        with tarfile.open(nfsroot) as tree:
            for member in tree:
                view.addfile(member, tree.extractfile(member) if member.isfile() else None)
        with tarfile.open(rootfs) as server:
            for member in server:
                if member.name.startswith("./usr/"):
                    view.addfile(member, server.extractfile(member) if member.isfile() else None)


@pytest.fixture(scope="module")
def client(diskless: DisklessBuild, engine: Engine) -> Iterator[Any]:
    with tempfile.TemporaryDirectory(prefix="bootkiln-client-") as scratch:
        view = Path(scratch) / "client.tar"
        client_view(diskless.nfsroot.artifact("nfsroot.tar"), diskless.rootfs.artifact("rootfs.tar"), view)
        tag = f"bootkiln-client:{diskless.nfsroot.key[:20]}"
        engine.client.api.import_image_from_file(str(view), repository=tag.split(":")[0], tag=tag.split(":")[1])
    with engine.idle_container(tag) as name:
        yield testinfra.get_host(f"docker://{name}")


def test_exclusions_are_gone_but_mount_points_stay(client: Any) -> None:
    for folder in ("/var", "/tmp", "/home", "/usr", "/proc", "/boot"):
        assert client.file(folder).is_directory
    assert client.run("find /var /tmp /home /boot -mindepth 1").stdout.split() == []


def test_template_files_are_in_place(client: Any, diskless: DisklessBuild) -> None:
    fstab = client.file("/etc/fstab").content_string
    assert "10.0.2.2:/srv/bootkiln/diskless/usr\t/usr\tnfs\tro," in fstab
    assert "10.0.2.2:/srv/bootkiln/diskless/home\t/home\tnfs\tro," in fstab
    assert "tmpfs\t/var\ttmpfs" in fstab and "tmpfs\t/tmp\ttmpfs" in fstab
    assert "@10.0.2.2:514" in client.file("/etc/rsyslog.d/90-bootkiln-remote.conf").content_string
    # (Docker mounts its own /etc/hostname into every container, so look in the tree itself.)
    with tarfile.open(diskless.nfsroot.artifact("nfsroot.tar")) as tree:
        assert "./etc/hostname" not in tree.getnames(), "the client takes its name from DHCP"


def test_populate_var_is_enabled_with_the_recorded_skeleton(client: Any) -> None:
    link = client.file("/etc/systemd/system/local-fs.target.wants/bootkiln-populate-var.service")
    assert link.is_symlink and link.linked_to == "/etc/systemd/system/bootkiln-populate-var.service"
    skeleton = client.file("/etc/bootkiln/var-skeleton").content_string.splitlines()
    entries = {tuple(line.split()[3:5]) for line in skeleton}
    assert {("d", "/var/lib/dpkg"), ("d", "/var/log"), ("l", "/var/run")} <= entries
    # (The dpkg database lives in /var, which the client does not carry: look for the programs.)
    assert client.file("/sbin/init").linked_to == "/usr/lib/systemd/systemd"
    assert client.file("/usr/sbin/rsyslogd").is_file


def test_no_server_secrets(client: Any) -> None:
    assert client.run("ls /etc/ssh/ssh_host_* 2>/dev/null").stdout.strip() == ""
    shadow = client.file("/etc/shadow").content_string
    hashes = [line.split(":")[1] for line in shadow.splitlines() if line.count(":") >= 2]
    assert hashes and all(value == "" or value.startswith(("!", "*")) for value in hashes)


def test_a_servers_own_root_folder_loses_its_secrets(diskless: DisklessBuild, tmp_path: Path) -> None:
    """`invoke nfsroot --source DIR`, as when a server copies its own root."""
    root = tmp_path / "server-root"
    root.mkdir()
    with tarfile.open(diskless.rootfs.artifact("rootfs.tar")) as archive:
        archive.extractall(root, filter="tar", numeric_owner=True)
    (root / "etc/ssh").mkdir(exist_ok=True)
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("PRIVATE KEY OF THE SERVER\n")
    (root / "root/.ssh").mkdir(parents=True, exist_ok=True)
    (root / "root/.ssh/id_ed25519").write_text("PRIVATE KEY OF ROOT\n")
    shadow = (root / "etc/shadow").read_text().splitlines()
    shadow[0] = "root:$6$salt$0123456789abcdefHASHOFTHESERVER:19000:0:99999:7:::"
    (root / "etc/shadow").write_text("\n".join(shadow) + "\n")
    env = {"BOOTKILN_CACHE": str(tmp_path / "cache"), "BOOTKILN_OUT": str(tmp_path / "out")}
    result = invoke(["nfsroot", "--profile", "diskless", "--source", str(root)], env=env)
    assert result.returncode == 0, result.output[-3000:]
    assert "▶ rootfs" not in result.output, "a given root folder needs no rootfs build"
    with tarfile.open(tmp_path / "out" / "diskless" / "nfsroot.tar") as tree:
        names = set(tree.getnames())
        client_shadow = tree.extractfile("./etc/shadow").read().decode()  # type: ignore[union-attr]
    assert "./etc/ssh/ssh_host_ed25519_key" not in names and "./root/.ssh/id_ed25519" not in names
    assert "HASHOFTHESERVER" not in client_shadow and client_shadow.startswith("root:!*:")


def test_exports_are_written_for_the_server(diskless: DisklessBuild) -> None:
    out = diskless.build.workspace.output_dir("diskless")
    assert "Path = /srv/bootkiln/diskless/root;" in (out / "ganesha-exports.conf").read_text()
    assert (out / "exports").read_text().startswith("/srv/bootkiln/diskless/root\t*(ro,no_root_squash")
    # Debian's signed shim and GRUB (Secure Boot) take about 4.9 MB of it.
    assert (out / "boot.iso").stat().st_size < 20 << 20

