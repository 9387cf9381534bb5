"""The installer end to end under TCG: user-data from `invoke userdata`, served by the fake IMDS that
`invoke fake-imds` runs, an offline install onto a blank virtual disk from the ISO and from the
128 MiB disk image, a reboot into the installed system, and its marker with the hostname and the
Puppet certificate's fingerprint. Then the installed disk itself, read without mounting it, checked
with testinfra; and documents or disks the installer must refuse without touching anything."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from bootkiln.console import Reporter
from bootkiln.core.engine import Engine
from bootkiln.core.runner import Runner
from bootkiln.installer.fakeimds import GUEST_GATEWAY, FakeImds, TokenMode
from bootkiln.installer.userdata import UserData, decode
from bootkiln.paths import Workspace
from bootkiln.pipeline import Build
from bootkiln.profile.loader import load_profile
from bootkiln.verify.qemu import Accel, uefi_vars
from tests.fixtures import ROOT, InstallerBuild, invoke, without_payload
from tests.support import diskread, lvm
from tests.support.installtest import InstallRun, Medium, install_argv, memory_for, run_install

HOSTNAME = "web1.example.com"
TARGET_SIZE = 4 << 30
INSTALL_TIMEOUT = 1200


@dataclass(frozen=True)
class Document:
    path: Path
    data: UserData

    @property
    def cert_sha256(self) -> str:
        cert = x509.load_pem_x509_certificate(self.data.certs.cert.encode())
        return cert.fingerprint(hashes.SHA256()).hex(":").upper()


PLAIN_LAYOUT = """[userdata.disk]
device = "{device}"
wipe = true
partitions = [
    {{ name = "root", size = "1536MiB", filesystem = "ext4", mountpoint = "/" }},
    {{ name = "swap", size = 128, filesystem = "swap" }},
    {{ name = "srv", size = "rest", filesystem = "ext4", mountpoint = "/srv" }},
]
"""


def make_userdata(tmp: Path, device: str, *, plain_and_wipe: bool = False) -> Document:
    """What an operator runs: `invoke userdata` for a profile whose layout names `device` (the
    installer profile's LVM layout, or plain partitions on a disk to erase)."""
    text = (ROOT / "profiles" / "installer.toml").read_text()
    if plain_and_wipe:
        text = text[:text.index("[userdata.disk]")] + PLAIN_LAYOUT.format(device=device)
    profile = tmp / f"installer-{device.rsplit('/', 1)[-1]}.toml"
    profile.write_text(text.replace('"/dev/vda"', f'"{device}"'))
    output = tmp / f"{HOSTNAME}-{device.rsplit('/', 1)[-1]}.gz"
    result = invoke(["userdata", "--profile", str(profile), "--hostname", HOSTNAME, "--output", str(output)],
                    env={"BOOTKILN_OUT": str(tmp / "out"), "BOOTKILN_PKI": str(tmp / "pki")})
    assert result.returncode == 0, result.output[-3000:]
    return Document(output, decode(output.read_bytes()))


def blank_disk(path: Path) -> Path:
    with path.open("wb") as handle:
        handle.truncate(TARGET_SIZE)
    return path


def install(installer: InstallerBuild, accel: Accel, medium: Medium, userdata: Path | None, target: Path,
            tmp: Path, *, tokens: TokenMode = "optional") -> InstallRun:
    image = installer.iso
    if medium == "disk":
        # The guest writes the installer's own disk (its partition becomes /boot): use a copy.
        image = tmp / "installer-disk.img"
        shutil.copyfile(installer.disk, image)
    reporter = Reporter(quiet_output=True)
    with FakeImds(userdata, tokens=tokens) as imds:
        argv = install_argv(medium, image, target, imds_port=imds.port, accel=accel,
                            memory=memory_for(installer.build.profile))
        return run_install(Runner(reporter), reporter, argv, timeout=INSTALL_TIMEOUT)


def report(capsys: pytest.CaptureFixture[str], what: str, run: InstallRun, accel: Accel) -> None:
    with capsys.disabled():
        print(f"\n  {what}: install done at {run.done_at or 0:.1f}s, installed system's marker at "
              f"{run.installed_at or 0:.1f}s ({accel})")


@dataclass(frozen=True)
class Installed:
    run: InstallRun
    disk: Path
    document: Document
    boot_disk: Path


@pytest.fixture(scope="module")
def installed_from_iso(installer: InstallerBuild, accel: Accel, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("install-iso")
    document = make_userdata(tmp, "/dev/vda")
    target = blank_disk(tmp / "target.img")
    run = install(installer, accel, "iso", document.path, target, tmp)
    return Installed(run, target, document, target)


def test_offline_install_from_the_iso_boots_the_installed_system(installed_from_iso: Installed, accel: Accel,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run = installed_from_iso.run
    report(capsys, "offline install from the ISO", run, accel)
    assert run.outcome == "installed", "\n".join(run.errors + run.tail)
    assert run.done_at is not None and run.installed_at is not None and run.done_at < run.installed_at
    assert run.done_fields["mode"] == "offline"
    assert run.fields["hostname"] == HOSTNAME
    assert run.fields["certname"] == HOSTNAME
    assert run.fields["cert-sha256"] == installed_from_iso.document.cert_sha256
    assert run.fields["root"] == "/dev/mapper/vg0-root"
    # "starting" while the report itself runs; never degraded (a failed unit) or worse.
    assert run.fields["state"] in ("starting", "running"), run.tail


def test_offline_install_from_the_disk_image_keeps_its_partition_as_boot(
        installer: InstallerBuild, accel: Accel, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The 128 MiB image boots the installer; the second disk, which holds a filesystem, is erased
    (the document says wipe) and gets plain partitions; /boot stays the image's own partition."""
    document = make_userdata(tmp_path, "/dev/vdb", plain_and_wipe=True)
    target = blank_disk(tmp_path / "target.img")
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "old-data", str(target)], check=True)
    run = install(installer, accel, "disk", document.path, target, tmp_path)
    report(capsys, "offline install from the 128 MiB disk image", run, accel)
    assert run.outcome == "installed", "\n".join(run.errors + run.tail)
    assert any("/dev/vdb is not empty; wipe=true: erasing it" in line for line in run.steps), run.steps
    assert run.fields["hostname"] == HOSTNAME
    assert run.fields["cert-sha256"] == document.cert_sha256
    # /boot is the installer's own partition on the first disk; the layout went onto the second.
    boot_disk = tmp_path / "installer-disk.img"
    assert [p.name for p in diskread.read_gpt(boot_disk)] == ["bios-boot", "esp", "bootkiln-installer"]
    parts = diskread.read_gpt(target)
    assert [p.name for p in parts] == ["root", "swap", "srv"]
    assert [p.size >> 20 for p in parts[:2]] == [1536, 128]
    root = dump_partition(target, "root", tmp_path / "root")
    assert (root / "etc" / "os-release").exists()
    boot = dump_partition(boot_disk, "bootkiln-installer", tmp_path / "boot")
    assert not (boot / "bootkiln-payload").exists() and not (boot / "bootkiln-installer").exists()
    assert sorted(p.name for p in boot.glob("vmlinuz-*")) and sorted(p.name for p in boot.glob("initrd.img-*"))
    # A plain root is found by its filesystem UUID, not through device-mapper.
    assert "root=UUID=" in (boot / "grub" / "grub.cfg").read_text()
    assert run.fields["root"].startswith("/dev/vdb1")


def test_offline_install_in_place_on_a_grown_ami_disk(installer: InstallerBuild, accel: Accel, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The EC2 case: the root volume is the AMI's 128 MiB image on a larger disk. The installer keeps
    its three partitions (the third becomes /boot) and adds the layout in the space after them."""
    document = make_userdata(tmp_path, "/dev/vda")
    volume = tmp_path / "root-volume.img"
    shutil.copyfile(installer.disk, volume)
    os.truncate(volume, TARGET_SIZE)
    reporter = Reporter(quiet_output=True)
    with FakeImds(document.path) as imds:
        argv = install_argv("disk", volume, None, imds_port=imds.port, accel=accel,
                            memory=memory_for(installer.build.profile))
        run = run_install(Runner(reporter), reporter, argv, timeout=INSTALL_TIMEOUT)
    report(capsys, "offline install in place on the grown 128 MiB image", run, accel)
    assert run.outcome == "installed", "\n".join(run.errors + run.tail)
    assert run.fields["hostname"] == HOSTNAME and run.fields["cert-sha256"] == document.cert_sha256
    parts = diskread.read_gpt(volume)  # checks both CRCs of the moved table
    assert [p.name for p in parts] == ["bios-boot", "esp", "bootkiln-installer", "pv"]
    assert parts[3].start + parts[3].size > TARGET_SIZE - (2 << 20), "the pv takes the grown space"


# --- the installed disk, read without mounting it ---------------------------------------------------
def dump_partition(image: Path, name: str, dest: Path) -> Path:
    partition = next(p for p in diskread.read_gpt(image) if p.name == name)
    fs = dest.with_suffix(".ext4")
    diskread.extract(image, [(partition.start, partition.size)], fs)
    diskread.replay_journal(fs)  # the installed system was running when QEMU stopped
    diskread.dump_ext4_tree(fs, dest)
    return dest


def dump_installed_root(installed: Installed, tmp: Path) -> Path:
    pv = next(p for p in diskread.read_gpt(installed.disk) if p.name == "pv")
    vg = lvm.read_lvm(installed.disk, pv.start, pv.size)
    assert vg is not None
    root_fs = tmp / "root.ext4"
    diskread.extract(installed.disk, lvm.lv_extents(vg, "root"), root_fs)
    diskread.replay_journal(root_fs)
    root = tmp / "root"
    diskread.dump_ext4_tree(root_fs, root)
    boot = dump_partition(installed.boot_disk, "boot", tmp / "boot-tree")
    shutil.rmtree(root / "boot")
    shutil.move(boot, root / "boot")
    return root


@pytest.fixture(scope="module")
def installed_tree(installed_from_iso: Installed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The installed root filesystem with its /boot, copied out of the disk image."""
    if installed_from_iso.run.outcome != "installed":
        pytest.fail("the install from the ISO failed; see that test")
    return dump_installed_root(installed_from_iso, tmp_path_factory.mktemp("installed-tree"))


@pytest.fixture(scope="module")
def installed_host(installed_tree: Path, engine: Engine,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[testinfra.host.Host]:
    """That tree as a container testinfra can inspect (Docker manages its /etc/hostname and /etc/hosts,
    so those two are checked on the tree itself)."""
    archive = tmp_path_factory.mktemp("installed-image") / "installed.tar"
    with tarfile.open(archive, "w") as tar:
        for entry in sorted(installed_tree.iterdir()):
            tar.add(entry, arcname=entry.name)
    tag = hashlib.sha256(archive.read_bytes()).hexdigest()[:20]
    engine.client.api.import_image_from_file(str(archive), repository="bootkiln-installed", tag=tag)
    try:
        with engine.idle_container(f"bootkiln-installed:{tag}") as name:
            yield testinfra.get_host(f"docker://{name}")
    finally:
        engine.client.images.remove(f"bootkiln-installed:{tag}", force=True)


def test_installed_disk_has_the_asked_partitions_and_volumes(installed_from_iso: Installed) -> None:
    parts = diskread.read_gpt(installed_from_iso.disk)
    assert [p.name for p in parts] == ["bios-boot", "esp", "boot", "pv"]
    assert [p.size >> 20 for p in parts[:3]] == [1, 64, 256]
    assert parts[3].start + parts[3].size > TARGET_SIZE - (2 << 20), "the pv takes the rest of the disk"
    vg = lvm.read_lvm(installed_from_iso.disk, parts[3].start, parts[3].size)
    assert vg is not None and vg.name == "vg0"
    sizes = {lv.name: lv.extent_count * vg.extent_size * 512 >> 20 for lv in vg.logical_volumes}
    assert sizes["root"] == 1536 and sizes["swap"] == 128
    assert sizes["srv"] > 2000, "srv takes the rest of the volume group"


def test_installed_fstab_mounts_the_layout_by_uuid(installed_host: testinfra.host.Host) -> None:
    lines = [line.split() for line in installed_host.file("/etc/fstab").content_string.splitlines()
             if line and not line.startswith("#")]
    mounts = {fields[1]: fields for fields in lines}
    assert set(mounts) == {"/", "/srv", "none", "/boot", "/boot/efi"}
    assert all(fields[0].startswith("UUID=") for fields in lines)
    assert mounts["/"][2] == "ext4" and mounts["/"][5] == "1"
    assert mounts["none"][2] == "swap" and mounts["/boot/efi"][2] == "vfat"


def test_installed_puppet_certificates_and_modes(installed_host: testinfra.host.Host) -> None:
    ssl = "/var/lib/puppet/ssl"
    key = installed_host.file(f"{ssl}/private_keys/{HOSTNAME}.pem")
    assert key.is_file and key.mode == 0o600 and key.user == "root" and key.group == "root"
    assert installed_host.file(f"{ssl}/private_keys").mode == 0o750
    for path in (f"{ssl}/certs/ca.pem", f"{ssl}/crl.pem", f"{ssl}/certs/{HOSTNAME}.pem",
                 f"{ssl}/public_keys/{HOSTNAME}.pem"):
        assert installed_host.file(path).mode == 0o644, path
    conf = installed_host.file("/etc/puppet/puppet.conf").content_string
    assert f"certname = {HOSTNAME}" in conf and "server = puppet.example.com" in conf
    assert installed_host.file("/var/lib/bootkiln/puppet-first-run").exists or \
        installed_host.file("/etc/systemd/system/multi-user.target.wants/bootkiln-puppet-first-run.service").exists


def test_installed_hostname(installed_tree: Path) -> None:
    assert (installed_tree / "etc" / "hostname").read_text().strip() == "web1"
    assert f"127.0.1.1\t{HOSTNAME} web1" in (installed_tree / "etc" / "hosts").read_text()


def test_no_private_key_outside_the_ssldir(installed_host: testinfra.host.Host) -> None:
    # Every regular file of the installed tree (-xdev: not the container's own mounts), each read
    # once; a PEM key is small, so big binaries are skipped.
    found = installed_host.check_output(
        "find / -xdev -type f -size -256k -print0 | xargs -0 grep -lE -- '-----BEGIN (RSA |EC )?PRIVATE KEY-----' "
        "2>/dev/null || true")
    assert found.split() == [f"/var/lib/puppet/ssl/private_keys/{HOSTNAME}.pem"]


def test_installed_kernel_initramfs_and_bootloader(installed_host: testinfra.host.Host) -> None:
    boot = installed_host.file("/boot")
    kernels = [name for name in boot.listdir() if name.startswith("vmlinuz-")]
    assert len(kernels) == 1
    version = kernels[0].removeprefix("vmlinuz-")
    assert installed_host.file(f"/boot/initrd.img-{version}").size > 1 << 20
    assert installed_host.file(f"/lib/modules/{version}/modules.dep").exists
    assert installed_host.file("/boot/grub/i386-pc/normal.mod").exists
    assert "root=/dev/mapper/vg0-root" in installed_host.file("/boot/grub/grub.cfg").content_string


def test_installed_esp_holds_grub_for_uefi(installed_from_iso: Installed, tmp_path: Path) -> None:
    esp = next(p for p in diskread.read_gpt(installed_from_iso.disk) if p.name == "esp")
    image = tmp_path / "esp.img"
    diskread.extract(installed_from_iso.disk, [(esp.start, esp.size)], image)
    listing = subprocess.run(["mdir", "-b", "-s", "-i", str(image), "::/EFI"], capture_output=True, text=True,
                             env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}, check=True).stdout
    assert "::/EFI/BOOT/BOOTX64.EFI" in listing.splitlines(), listing


# --- the installer without its payload: the online installer, within 16 MiB ------------------------
@pytest.fixture(scope="module")
def online_only_iso(installer: InstallerBuild, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("online-only")
    profile = without_payload("installer", tmp)
    workspace = Workspace(cache=installer.build.workspace.cache, out=tmp / "out")
    return Build(load_profile(str(profile)), workspace=workspace, reporter=Reporter()).iso().artifact("boot.iso")


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_the_installer_iso_without_payload_is_within_16_mib_and_boots_bios_and_uefi(
        online_only_iso: Path, accel: Accel, tmp_path: Path, firmware: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    size = online_only_iso.stat().st_size
    with capsys.disabled():
        print(f"\n  installer ISO without payload: {size:,} bytes ({size / 1048576:.2f} MiB)")
    # 12 MB before Debian's signed shim (1.0 MB) and CD GRUB (3.8 MB) joined its UEFI path (Secure Boot);
    # neither can be trimmed without breaking its signature (docs/secureboot.md, "Size").
    assert size <= 16 << 20
    target = blank_disk(tmp_path / "target.img")
    reporter = Reporter(quiet_output=True)
    with uefi_vars("uefi-cd" if firmware == "uefi" else "bios-cd") as (ovmf, store), FakeImds(None) as imds:
        argv = install_argv("iso", online_only_iso, target, imds_port=imds.port, accel=accel, memory=1024,
                            firmware=ovmf, uefi_vars=store)
        run = run_install(Runner(reporter), reporter, argv, timeout=300)
        requests = [(r.method, r.path, r.status) for r in imds.requests]
    # It booted its own initramfs under this firmware, asked IMDS (v2 first) and stopped cleanly.
    assert run.outcome == "failed", "\n".join(run.tail)
    assert "this instance has no user-data" in "\n".join(run.tail)
    assert requests[:2] == [("PUT", "/latest/api/token", 200), ("GET", "/latest/user-data", 404)]


@pytest.mark.slow
def test_online_install_runs_debootstrap_against_the_mirror(online_only_iso: Path, accel: Accel, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """No payload: the tools come from the mirror (pinned by sha256), the system from debootstrap."""
    document = make_userdata(tmp_path, "/dev/vda")
    target = blank_disk(tmp_path / "target.img")
    reporter = Reporter(quiet_output=True)
    with FakeImds(document.path) as imds:
        argv = install_argv("iso", online_only_iso, target, imds_port=imds.port, accel=accel, memory=1536)
        run = run_install(Runner(reporter), reporter, argv, timeout=3600)
    report(capsys, "online install (debootstrap) from the ISO without payload", run, accel)
    assert run.outcome == "installed", "\n".join(run.errors + run.tail)
    assert run.done_fields["mode"] == "online"
    assert run.fields["hostname"] == HOSTNAME
    assert run.fields["cert-sha256"] == document.cert_sha256


# --- what the installer must refuse, changing no disk ---------------------------------------------------
def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def good_document(tmp_path_factory: pytest.TempPathFactory) -> Document:
    return make_userdata(tmp_path_factory.mktemp("userdata"), "/dev/vda")


def rewrite(document: Document, tmp: Path, old: str, new: str) -> Path:
    text = gzip.decompress(document.path.read_bytes()).decode()
    assert old in text
    path = tmp / "bad.gz"
    path.write_bytes(gzip.compress(text.replace(old, new).encode(), mtime=0))
    return path


@pytest.mark.parametrize(("case", "message"), [
    ("invalid", "invalid user-data: user-data line 3: bad hostname"),
    ("wrong-version", "version 2 is not supported"),
    ("oversized", "over EC2's 16384-byte limit"),
    ("missing", "this instance has no user-data (IMDS answered 404)"),
    ("not-empty-disk", "is not empty"),
])
def test_bad_user_data_or_disk_stops_with_a_message_and_changes_no_disk(
        installer: InstallerBuild, accel: Accel, good_document: Document, tmp_path: Path, case: str,
        message: str) -> None:
    target = blank_disk(tmp_path / "target.img")
    userdata: Path | None = good_document.path
    if case == "invalid":
        userdata = rewrite(good_document, tmp_path, f"hostname={HOSTNAME}", "hostname=web1;reboot")
    elif case == "wrong-version":
        userdata = rewrite(good_document, tmp_path, "version=1", "version=2")
    elif case == "oversized":
        userdata = tmp_path / "big.gz"
        userdata.write_bytes(gzip.compress(os.urandom(20000), mtime=0))
    elif case == "missing":
        userdata = None
    else:
        # A disk that holds a filesystem (made by the host's e2fsprogs), and a document without wipe.
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "precious", str(target)], check=True)
    before = sha256(target)
    run = install(installer, accel, "iso", userdata, target, tmp_path)
    assert run.outcome == "failed", "\n".join(run.tail)
    shown = "\n".join(run.tail)
    assert message in shown
    assert "installer: no disk was changed" in shown
    assert sha256(target) == before


def test_imdsv1_fallback_and_the_kernel_command_line_override(installer: InstallerBuild, accel: Accel,
                                                               good_document: Document, tmp_path: Path) -> None:
    """Where the installer gets its document: IMDSv1 when no token is offered, or the URL given as
    bootkiln.userdata= (then IMDS is not asked). A wrong-version document stops it right after."""
    document = rewrite(good_document, tmp_path, "version=1", "version=2")
    reporter = Reporter(quiet_output=True)
    with FakeImds(document, tokens="v1-only") as imds:
        argv = install_argv("iso", installer.iso, None, imds_port=imds.port, accel=accel, memory=1024)
        run = run_install(Runner(reporter), reporter, argv, timeout=300)
        asked = [(r.method, r.path, r.status, r.token_sent) for r in imds.requests]
    assert run.outcome == "failed", "\n".join(run.tail)
    assert any("no IMDSv2 token (HTTP 404); trying IMDSv1" in line for line in run.steps), run.steps
    assert "version 2 is not supported" in "\n".join(run.tail)
    assert asked[:2] == [("PUT", "/latest/api/token", 404, False), ("GET", "/latest/user-data", 200, False)]

    kernel = installer.build.stage("kernel").artifact("vmlinuz")
    initrd = installer.build.stage("initramfs").artifact("initrd.img")
    with FakeImds(document) as server:
        url = f"http://{GUEST_GATEWAY}:{server.port}/latest/user-data"  # the host, seen from the guest
        argv = install_argv("iso", installer.iso, None, imds_port=server.port, accel=accel, memory=1024)
        argv += ["-kernel", str(kernel), "-initrd", str(initrd),
                 "-append", f"console=ttyS0,115200 bootkiln.userdata={url}"]
        run = run_install(Runner(reporter), reporter, argv, timeout=300)
        asked = [(r.method, r.path, r.status, r.token_sent) for r in server.requests]
    assert run.outcome == "failed", "\n".join(run.tail)
    assert any(f"fetching {url}" in line for line in run.steps), run.steps
    assert "version 2 is not supported" in "\n".join(run.tail)
    assert asked == [("GET", "/latest/user-data", 200, False)]

