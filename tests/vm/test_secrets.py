"""No private key of ours leaks: the installer's user-data made with generated Puppet keys, its ISO and
disk built, then out/, the stage cache, every artifact (opened all the way down: the initramfs in the
ISO, the rootfs in the payload, the filesystems in the disk image) and everything the tasks printed
are searched for every generated key. A key may appear only in the files meant to hold it, each of
them mode 0600.

The keys are found wherever `invoke userdata` put them: every folder the tasks may write to (the
cache, out/, and a HOME and XDG folders of their own) is searched for PEM private keys, and each one
found is matched to the CA or host certificate it belongs to, so moving the CA key elsewhere in that
sandbox needs no change here.

It shares the session's installer build (tests/fixtures.py `installer`) with the installer's VM
tests; after the keys exist, `invoke build-iso` and `invoke build-disk` run again on the same cache
and out/ (cache hits, seconds) so that their output and what they publish are searched too.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from bootkiln.installer.userdata import decode
from tests.conftest import component_missing
from tests.fixtures import InstallerBuild, SessionBuild, invoke
from tests.support.secretscan import PrivateKey, Scanner, key_files, private_key

HOSTS = ("web1.example.com", "db1.example.com")


@dataclass(frozen=True)
class Sandbox:
    env: dict[str, str]
    roots: list[Path]  # every folder the tasks may write to
    userdata: dict[str, Path]  # hostname -> its user-data file
    output: str  # everything the tasks printed


@pytest.fixture(scope="module")
def sandbox(installer: InstallerBuild, session_build: SessionBuild,
            tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    """User-data for two hosts (one CA, two host keys), then the ISO and disk published again."""
    home = tmp_path_factory.mktemp("secrets-home")
    # Where generated CAs and keys are kept (never under out/); a folder of the test's own, searched too.
    pki = tmp_path_factory.mktemp("secrets-pki")
    workspace = installer.build.workspace
    env = {"BOOTKILN_CACHE": str(workspace.cache), "BOOTKILN_OUT": str(workspace.out), "HOME": str(home),
           "BOOTKILN_PKI": str(pki),
           **{name: str(home / folder) for name, folder in (("XDG_CONFIG_HOME", ".config"),
                                                             ("XDG_DATA_HOME", ".local/share"),
                                                             ("XDG_STATE_HOME", ".local/state"),
                                                             ("XDG_CACHE_HOME", ".cache"))}}
    outputs = []
    userdata = {}
    for host in HOSTS:
        explicit = home / "documents" / f"{host}.gz"
        # The first goes to its default place in out/, the second where an operator asks.
        args = ["userdata", "--profile", "installer", "--hostname", host]
        if host != HOSTS[0]:
            explicit.parent.mkdir(exist_ok=True)
            args += ["--output", str(explicit)]
        result = invoke(args, env=env, timeout=300)
        assert result.returncode == 0, result.output[-3000:]
        outputs.append(result.output)
        userdata[host] = explicit if host != HOSTS[0] else workspace.out / "installer" / "userdata" / f"{host}.gz"
    for task in ("build-iso", "build-disk"):
        result = invoke([task, "--profile", "installer"], env=env)
        assert result.returncode == 0, result.output[-3000:]
        outputs.append(result.output)
    roots = {root.resolve() for root in (workspace.cache, workspace.out, session_build.workspace.out, home, pki)
             if root.exists()}
    outermost = sorted(root for root in roots if not any(other in root.parents for other in roots))
    return Sandbox(env, outermost, userdata, "\n".join(outputs))


@dataclass(frozen=True)
class Generated:
    key: PrivateKey
    file: Path  # where the generated key lives
    owner: str  # "CA" or a hostname


def public_der(public: PublicKeyTypes) -> bytes:
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def generated(sandbox: Sandbox) -> list[Generated]:
    """Every private key the tasks wrote, each matched to the certificate it belongs to."""
    documents = {host: decode(path.read_bytes()) for host, path in sandbox.userdata.items()}
    owners = {public_der(x509.load_pem_x509_certificate(doc.certs.cert.encode()).public_key()): host
              for host, doc in documents.items()}
    cas = {public_der(x509.load_pem_x509_certificate(doc.certs.ca.encode()).public_key()) for doc in documents.values()}
    assert len(cas) == 1, "both hosts' certificates come from one CA"
    owners[cas.pop()] = "CA"
    found = []
    for root in sandbox.roots:
        for path in key_files(root):
            if path in sandbox.userdata.values():
                continue
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            owner = owners.get(public_der(key.public_key()))
            assert owner is not None, f"{path} holds a private key that belongs to no certificate we made"
            found.append(Generated(private_key(f"{owner} key", path.read_bytes()), path, owner))
    assert sorted(g.owner for g in found) == sorted(["CA", *HOSTS]), (
        f"expected one file for the CA key and one per host key under {[str(r) for r in sandbox.roots]}, found "
        f"{[(g.owner, str(g.file)) for g in found]}")
    return found


def meant_to_hold(generated: list[Generated], sandbox: Sandbox) -> dict[Path, str]:
    """The files meant to hold a key: each key's own file, and each host's user-data (its host key only)."""
    allowed = {g.file: g.key.label for g in generated}
    allowed.update({path: f"{host} key" for host, path in sandbox.userdata.items()})
    return allowed


def test_no_private_key_outside_the_files_meant_to_hold_it(sandbox: Sandbox, generated: list[Generated],
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    if shutil.which("debugfs", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
        component_missing("debugfs", "the disk image's ext4 filesystems are opened with it (apt-get install e2fsprogs)")
    scanner = Scanner([g.key for g in generated], tmp_path_factory.mktemp("secretscan"))
    for root in sandbox.roots:
        scanner.scan_tree(root)
    scanner.scan_text(sandbox.output, "the tasks' terminal output")
    allowed = meant_to_hold(generated, sandbox)

    leaks = [str(f) for f in scanner.findings if allowed.get(Path(f.location[0])) != f.key]
    assert leaks == [], "private key material where it does not belong:\n" + "\n".join(leaks)
    # The scan saw what it had to see: each key in its own file, each host key in its user-data
    # (through gzip), and every container of the installer's ISO and disk opened.
    holding = {(Path(f.location[0]), f.key) for f in scanner.findings}
    assert set(allowed.items()) <= holding, sorted(set(allowed.items()) - holding)
    assert {"gzip", "xz", "tar", "cpio", "iso9660", "gpt", "ext4"} <= set(scanner.opened), scanner.opened
    assert scanner.unreadable == []
    for path in allowed:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path} holds a private key but is not mode 0600"


def test_the_user_data_carries_its_own_host_key_and_no_other(sandbox: Sandbox, generated: list[Generated]) -> None:
    for host, path in sandbox.userdata.items():
        text = gzip.decompress(path.read_bytes())
        for g in generated:
            assert any(needle in text for needle in g.key.needles) == (g.owner == host), (host, g.owner)
