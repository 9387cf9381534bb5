"""The user-data reader the installer's initramfs runs, run here by busybox alone as it is there."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.unit.conftest import USERDATA_READER

from bootkiln.installer import pki
from bootkiln.installer.userdata import encode, host_names, render
from bootkiln.profile.userdata import UserdataSettings

READER = USERDATA_READER




@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    settings = UserdataSettings.model_validate({
        "hostname": "web1.example.com", "puppet": {"server": "puppet.example.com"},
        "disk": {"partitions": [{"name": "data", "size": "512MiB", "filesystem": "xfs", "mountpoint": "/data"},
                                {"name": "pv", "size": "rest", "filesystem": "lvm"}],
                 "volume_group": {"name": "vg0", "logical_volumes": [
                     {"name": "root", "size": "8GiB", "filesystem": "ext4", "mountpoint": "/"},
                     {"name": "swap", "size": 1024, "filesystem": "swap"}]}}})
    names = host_names(settings, None, where="test")
    certs = pki.generate(tmp_path_factory.mktemp("pki"), certname=names.certname, hostname=names.hostname,
                         server=names.server, key_type="ec-p256")
    return encode(render(settings, names=names, certs=certs)).blob


def read(busybox_path: Path, tmp_path: Path, data: bytes) -> tuple[subprocess.CompletedProcess[str], Path]:
    source = tmp_path / "user-data"
    source.write_bytes(data)
    out = tmp_path / "out"
    process = subprocess.run([str(busybox_path / "sh"), str(READER), str(source), str(out)], capture_output=True,
                             text=True, env={"PATH": str(busybox_path)}, timeout=30, check=False)
    return process, out


def test_busybox_reads_every_part(busybox_path: Path, tmp_path: Path, blob: bytes) -> None:
    process, out = read(busybox_path, tmp_path, blob)
    assert process.returncode == 0, process.stderr
    env = (out / "userdata.env").read_text().splitlines()
    assert env == ["BK_VERSION='1'", "BK_HOSTNAME='web1.example.com'", "BK_DISK_DEVICE='/dev/nvme0n1'",
                   "BK_DISK_WIPE='false'", "BK_VG='vg0'", "BK_VG_PV='pv'", "BK_PUPPET_SERVER='puppet.example.com'",
                   "BK_PUPPET_ENVIRONMENT='production'", "BK_PUPPET_CERTNAME='web1.example.com'"]
    assert (out / "layout").read_text().splitlines() == ["part data 512 xfs /data", "part pv rest lvm -",
                                                         "lv root 8192 ext4 /", "lv swap 1024 swap -"]
    text = gzip.decompress(blob).decode()
    for part in ("ca", "crl", "cert", "key"):
        pem = text.split(f"begin={part}\n")[1].split(f"end={part}\n")[0]
        assert (out / f"{part}.pem").read_text() == pem
        assert (out / f"{part}.pem").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in out.iterdir()) == ["ca.pem", "cert.pem", "crl.pem", "key.pem", "layout",
                                                     "userdata.env"]


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda t: t.replace("version=1", "version=2"), "version 2 is not supported"),
    (lambda t: t.replace("hostname=web1", "hostname=web1;reboot"), "bad hostname"),
    (lambda t: t.replace("disk.wipe=false", "disk.wipe=yes"), "disk.wipe is true or false"),
    (lambda t: t.replace("puppet.environment=production\n", "puppet.environment=production\nfoo=bar\n"),
     "unknown key foo"),
    (lambda t: t.replace("hostname=web1.example.com\n", "hostname=a.example.com\nhostname=b.example.com\n"),
     "hostname given twice"),
    (lambda t: t.replace("end=key\n", ""), "section key has no end=key"),
    (lambda t: t.replace("begin=crl\n-----BEGIN X509 CRL-----", "begin=crl\n-----BEGIN CERTIFICATE-----"),
     "section crl holds -----BEGIN CERTIFICATE-----"),
    (lambda t: t.replace("lv root 8192 ext4 /", "lv root 8192 ext4 /srv").replace("lv=root 8192 ext4 /\n",
                                                                                  "lv=root 8192 ext4 /srv\n"),
     "nothing is mounted at /"),
    (lambda t: t.replace("vg=vg0 pv", "vg=vg0 data"), "the vg must name the one lvm partition"),
    (lambda t: t.replace("part=data 512 xfs /data\n", "part=data rest xfs /data\n"),
     "part data takes the rest of the space but is not last"),
    (lambda t: t.replace("#bootkiln-userdata", "#cloud-config"), "not a bootkiln user-data document"),
    (lambda t: t.replace("part=data 512 xfs /data\n", "part=data 512 xfs /boot\n"),
     "/boot is the installer's own partition"),
    (lambda t: t + "#" * (1 << 20), "more than 1048576 bytes of text"),
    # Found by the property tests: the Python reader takes one space between fields, and so must this.
    (lambda t: t.replace("part=data 512", "part= data 512"), "bad part record"),
    (lambda t: t.replace("lv=swap 1024 swap", "lv=swap 1024\tswap"), "bad lv record"),
    (lambda t: t.replace("vg=vg0 pv", "vg=vg0  pv"), "bad vg record"),
    (lambda t: t.replace("part=data 512", "part=\rdata 512"), "bad part record"),
    (lambda t: t.replace("vg=vg0 pv", "vg=vg0 pv\r"), "bad vg record"),
    (lambda t: t[:-1], "does not end with a newline (truncated?)"),
    (lambda t: t.replace("lv=swap 1024 swap -\n", "lv=swap 1024 swap -\nlv=swap 1024 swap -\n"),
     "lv name swap used twice"),
    (lambda t: t.replace("part=data 512 xfs /data\n", "part=data 512 xfs /data\npart=data 512 swap -\n"),
     "part name data used twice"),
    (lambda t: t.replace("part=data 512 xfs /data\n", "".join(f"part=p{i} 1 swap -\n" for i in range(100))),
     "more than 100 partitions"),
    (lambda t: "".join(line + "\n" for line in t.split("\n")[:-1] if not line.startswith("lv=")),
     "the vg has no logical volumes"),
    (lambda t: t.replace("-----BEGIN CERTIFICATE-----\nM", "-----BEGIN CERTIFICATE-----\nM\0", 1), "holds a NUL byte"),
    (lambda t: t.replace("hostname=web1.example.com", "hostname=web1..example.com"), "bad hostname"),
    (lambda t: t.replace("hostname=web1.example.com", "hostname=web1-.example.com"), "bad hostname"),
    (lambda t: t.replace("hostname=web1.example.com", "hostname=" + "a" * 64 + ".com"), "bad hostname"),
    (lambda t: t.replace("puppet.environment=production", "puppet.environment=" + "p" * 65),
     "bad puppet.environment"),
    (lambda t: t.replace("-----END X509 CRL-----\n", "", 1), "section crl has a PEM block without its END line"),
    (lambda t: t.replace("-----END X509 CRL-----\n", "-----END CERTIFICATE-----\n", 1),
     "section crl is not plain PEM"),
    (lambda t: t.replace("begin=crl\n", "begin=crl\nMIIB\n", 1), "section crl is not plain PEM"),
    (lambda t: t.replace("end=key\n", t.split("begin=key\n")[1].split("end=key\n")[0] + "end=key\n", 1),
     "section key holds more than one PEM block"),
])
def test_busybox_refuses_a_bad_document_and_leaves_nothing(busybox_path: Path, tmp_path: Path, blob: bytes,
                                                           mutate: object, message: str) -> None:
    assert callable(mutate)
    process, out = read(busybox_path, tmp_path, gzip.compress(mutate(gzip.decompress(blob).decode()).encode()))
    assert process.returncode == 1
    assert message in process.stderr
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("mountpoint", ["/../../../../etc", "/boot/.", "/.", "/..", "/srv/../boot", "/./srv",
                                        "//srv", "/srv/", "/srv//x"])
def test_busybox_refuses_mountpoints_that_are_not_plain_paths(busybox_path: Path, tmp_path: Path, blob: bytes,
                                                              mountpoint: str) -> None:
    """The installer mounts at "$TT$mount": a `..` would land outside the target, `/boot/.` dodges the
    reserved-/boot check."""
    text = gzip.decompress(blob).decode()
    assert "part=data 512 xfs /data\n" in text
    odd = text.replace("part=data 512 xfs /data\n", f"part=data 512 xfs {mountpoint}\n")
    process, out = read(busybox_path, tmp_path, gzip.compress(odd.encode()))
    assert (process.returncode, process.stderr.strip()) == (1, "user-data line 6: bad part record")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("mountpoint", ["/srv.d/a..b", "/...", "/.hidden"])
def test_busybox_takes_dots_inside_a_component(busybox_path: Path, tmp_path: Path, blob: bytes,
                                               mountpoint: str) -> None:
    text = gzip.decompress(blob).decode().replace("part=data 512 xfs /data\n", f"part=data 512 xfs {mountpoint}\n")
    process, out = read(busybox_path, tmp_path, gzip.compress(text.encode()))
    assert process.returncode == 0, process.stderr
    assert f"part data 512 xfs {mountpoint}" in (out / "layout").read_text().splitlines()


def test_plain_text_user_data_is_read_too(busybox_path: Path, tmp_path: Path, blob: bytes) -> None:
    process, out = read(busybox_path, tmp_path, gzip.decompress(blob))
    assert process.returncode == 0, process.stderr
    assert "BK_HOSTNAME='web1.example.com'" in (out / "userdata.env").read_text()


def test_busybox_refuses_a_truncated_download(busybox_path: Path, tmp_path: Path, blob: bytes) -> None:
    process, out = read(busybox_path, tmp_path, blob[: len(blob) - 9])
    assert (process.returncode, process.stderr.strip()) == (1, "user-data: not a complete gzip stream")
    assert list(out.iterdir()) == []


def test_the_reader_is_posix_sh_for_dash_too(tmp_path: Path, blob: bytes) -> None:
    """The same script under the host's sh, awk and gzip: nothing in it is busybox-only."""
    dash = shutil.which("dash") or "/bin/sh"
    source = tmp_path / "user-data"
    source.write_bytes(blob)
    process = subprocess.run([dash, str(READER), str(source), str(tmp_path / "out")], capture_output=True, text=True,
                             env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, timeout=30, check=False)
    assert process.returncode == 0, process.stderr
    assert "BK_HOSTNAME='web1.example.com'" in (tmp_path / "out" / "userdata.env").read_text()
