"""The user-data schema, its wire format and EC2's 16 KB budget (no AWS, no network)."""

from __future__ import annotations

import base64
import gzip
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from bootkiln.commands import installer as installer_commands
from bootkiln.errors import InputError
from bootkiln.installer.userdata import (
    EC2_USERDATA_LIMIT,
    MAGIC,
    Certificates,
    UserData,
    UserdataTooLarge,
    check_budget,
    decode,
    encode,
    host_names,
    render,
)
from bootkiln.profile.loader import load_profile
from bootkiln.profile.userdata import (
    DiskLayout,
    LogicalVolume,
    Partition,
    PuppetSettings,
    UserdataSettings,
    VolumeGroup,
)

WriteProfile = Callable[[str], Path]


def pem(label: str, payload: bytes) -> str:
    body = base64.b64encode(payload).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]) + "\n"


CERTS = Certificates(ca=pem("CERTIFICATE", b"ca" * 300), crl=pem("X509 CRL", b"crl" * 100),
                     cert=pem("CERTIFICATE", b"cert" * 250), key=SecretStr(pem("PRIVATE KEY", b"secret" * 200)))
LVM = DiskLayout(device="/dev/xvdb", wipe=True,
                 partitions=[Partition(name="data", size="512MiB", filesystem="xfs", mountpoint="/data"),
                             Partition(name="pv", size="rest", filesystem="lvm")],
                 volume_group=VolumeGroup(name="vg0", logical_volumes=[
                     LogicalVolume(name="root", size="8GiB", filesystem="ext4", mountpoint="/"),
                     LogicalVolume(name="swap", size=2048, filesystem="swap"),
                     LogicalVolume(name="srv", size="rest", filesystem="xfs", mountpoint="/srv")]))
SETTINGS = UserdataSettings(hostname="web1.example.com", disk=LVM,
                            puppet=PuppetSettings(server="puppet.example.com", environment="staging"))


def document(settings: UserdataSettings = SETTINGS, certs: Certificates = CERTS) -> UserData:
    return render(settings, names=host_names(settings, None, where="test"), certs=certs)


def test_sizes_are_whole_mib_with_units_or_rest() -> None:
    assert [p.size for p in LVM.partitions] == [512, "rest"]
    assert LVM.volume_group is not None
    assert [lv.size for lv in LVM.volume_group.logical_volumes] == [8192, 2048, "rest"]
    assert Partition(name="big", size="1TiB", filesystem="xfs", mountpoint="/").size == 1024 * 1024
    with pytest.raises(ValidationError, match=r"'1TiB', or 'rest' for the remaining space; got '20GB'"):
        Partition(name="root", size="20GB", filesystem="ext4", mountpoint="/")
    with pytest.raises(ValidationError):
        Partition(name="root", size=0, filesystem="ext4", mountpoint="/")


@pytest.mark.parametrize(("layout", "message"), [
    ({"partitions": [{"name": "a", "size": "rest", "filesystem": "ext4", "mountpoint": "/"},
                     {"name": "b", "size": 10, "filesystem": "swap"}]}, "'a' takes the 'rest'"),
    ({"partitions": [{"name": "a", "size": 10, "filesystem": "ext4", "mountpoint": "/"},
                     {"name": "b", "size": 10, "filesystem": "ext4", "mountpoint": "/"}]}, "repeated: /"),
    ({"partitions": [{"name": "a", "size": 10, "filesystem": "ext4", "mountpoint": "/srv"}]}, "mounted at '/'"),
    ({"partitions": [{"name": "a", "size": 10, "filesystem": "ext4", "mountpoint": "/"},
                     {"name": "a", "size": 10, "filesystem": "swap"}]}, "repeated: a"),
    ({"partitions": [{"name": "pv", "size": "rest", "filesystem": "lvm"}]}, "no volume_group"),
    ({"partitions": [{"name": "r", "size": 10, "filesystem": "ext4", "mountpoint": "/"}],
      "volume_group": {"name": "vg", "logical_volumes": [{"name": "x", "size": 1, "filesystem": "swap"}]}},
     "exactly one partition with filesystem 'lvm'"),
    ({"partitions": [{"name": "s", "size": 10, "filesystem": "swap", "mountpoint": "/swap"}]}, "takes no mountpoint"),
    ({"partitions": [{"name": "r", "size": 10, "filesystem": "ext4"}]}, "needs a mountpoint"),
    ({"device": "/dev/../etc/passwd"}, "device"),
])
def test_inconsistent_layouts_are_refused(layout: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DiskLayout.model_validate(layout)


# "$target$mount" must stay inside the target, and a spelling of /boot or of a repeated mountpoint
# must not slip past the checks that compare strings.
ODD_MOUNTPOINTS = ["/../../../../etc", "/boot/.", "/.", "/..", "/srv/..", "/srv/../boot", "/./srv", "//srv",
                   "/srv//data", "/srv/", "srv", ""]


@pytest.mark.parametrize("mountpoint", ODD_MOUNTPOINTS)
def test_mountpoints_are_plain_absolute_paths(mountpoint: str) -> None:
    layout = {"partitions": [{"name": "root", "size": 10, "filesystem": "ext4", "mountpoint": "/"},
                             {"name": "odd", "size": 10, "filesystem": "ext4", "mountpoint": mountpoint}]}
    with pytest.raises(ValidationError, match="mountpoint"):
        DiskLayout.model_validate(layout)
    volume = {"name": "odd", "size": 10, "filesystem": "ext4", "mountpoint": mountpoint}
    with pytest.raises(ValidationError, match="mountpoint"):
        LogicalVolume.model_validate(volume)


@pytest.mark.parametrize("mountpoint", ["/../../../../etc", "/boot/.", "/."])
def test_decode_refuses_dot_mountpoints(mountpoint: str) -> None:
    text = gzip.decompress(encode(document()).blob).decode()
    assert "part=data 512 xfs /data\n" in text
    with pytest.raises(InputError, match=r"'\.' or '\.\.' component"):
        decode(gzip.compress(text.replace("part=data 512 xfs /data\n", f"part=data 512 xfs {mountpoint}\n").encode()))


@pytest.mark.parametrize("mountpoint", ["/srv.d/a..b", "/...", "/.hidden", "/a-b_c/.x"])
def test_dots_inside_a_component_are_fine(mountpoint: str) -> None:
    assert Partition(name="p", size=1, filesystem="ext4", mountpoint=mountpoint).mountpoint == mountpoint


def test_profile_errors_name_the_dotted_key(write_profile: WriteProfile) -> None:
    path = write_profile('[userdata.disk]\npartitions = [{ name = "root", size = "ten", filesystem = "ext4", '
                         'mountpoint = "/" }]\n')
    with pytest.raises(InputError, match=r"key 'userdata\.disk\.partitions\.0\.size'"):
        load_profile(str(path))
    path = write_profile('[userdata]\nhostnmae = "x"\n')
    with pytest.raises(InputError, match=r"key 'userdata.hostnmae': unknown key \(allowed here: certs, disk, "):
        load_profile(str(path))


def test_wire_text_is_line_oriented_and_round_trips() -> None:
    doc = document()
    encoded = encode(doc)
    text = gzip.decompress(encoded.blob).decode("ascii")
    assert text.startswith(f"{MAGIC}\nversion=1\nhostname=web1.example.com\ndisk.device=/dev/xvdb\ndisk.wipe=true\n")
    assert ("part=data 512 xfs /data\npart=pv rest lvm -\nvg=vg0 pv\nlv=root 8192 ext4 /\nlv=swap 2048 swap -\n"
            "lv=srv rest xfs /srv\npuppet.server=puppet.example.com\npuppet.environment=staging\n"
            "puppet.certname=web1.example.com\nbegin=ca\n-----BEGIN CERTIFICATE-----\n") in text
    assert text.endswith("-----END PRIVATE KEY-----\nend=key\n")
    assert decode(encoded.blob) == doc
    assert encode(doc).blob == encoded.blob, "the same document gives the same bytes"
    assert encoded.blob[4:8] == b"\0\0\0\0", "gzip header mtime is 0"


def test_budget_parts_add_up_to_the_compressed_size() -> None:
    encoded = encode(document())
    assert [part.name for part in encoded.parts] == ["header", "disk", "puppet", "ca", "crl", "cert", "key",
                                                     "gzip framing"]
    assert sum(part.compressed for part in encoded.parts) == encoded.size
    assert sum(part.raw for part in encoded.parts) == len(gzip.decompress(encoded.blob))
    report = encoded.report()
    assert report[0].split() == ["part", "raw", "bytes", "gzip", "bytes", "of", "limit"]
    assert report[-2].startswith("total") and f"{encoded.size:,}" in report[-2]
    assert report[-1] == f"EC2 limit 16,384 bytes: {EC2_USERDATA_LIMIT - encoded.size:,} bytes left"
    check_budget(encoded)


def test_an_oversized_document_is_refused_with_the_figures() -> None:
    huge_crl = pem("X509 CRL", os.urandom(20000))  # random: incompressible, like a CRL's serials and signatures
    encoded = encode(document(certs=CERTS.model_copy(update={"crl": huge_crl})))
    with pytest.raises(UserdataTooLarge) as caught:
        check_budget(encoded)
    error = caught.value
    assert error.message == (f"user-data is {encoded.size:,} bytes compressed, over EC2's 16,384-byte limit by "
                             f"{encoded.size - EC2_USERDATA_LIMIT:,} bytes")
    assert "the largest part is crl" in error.hint
    crl_line = next(line for line in error.details() if line.startswith("crl"))
    assert f"{len(huge_crl) + len('begin=crl') + len('end=crl') + 2:,}" in crl_line
    assert error.details()[-1].endswith("bytes over")


def test_the_private_key_never_shows_in_reprs() -> None:
    doc = document()
    secret = CERTS.key.get_secret_value().splitlines()[1]
    assert secret not in repr(doc) and secret not in str(doc)
    assert secret not in doc.model_dump_json()


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda t: t.replace("version=1", "version=2"), "version '2' is not supported"),
    (lambda t: t.replace("hostname=", "hostnme="), "unexpected or repeated line"),
    (lambda t: t.replace("puppet.server=puppet.example.com\n", "puppet.server=a\npuppet.server=b\n"), "repeated"),
    (lambda t: t.replace("end=key\n", ""), "section 'key' has no end=key"),
    (lambda t: t.replace(MAGIC, "#cloud-config"), "does not start with"),
    (lambda t: t.replace("vg=vg0 pv\n", ""), "lv= lines without a vg= line"),
    (lambda t: t.replace("vg=vg0 pv", "vg=vg0 data"), "names physical volume 'data'"),
    (lambda t: t.replace("part=data 512", "part=data 5x2"), "not a whole number"),
    (lambda t: t.replace("part=data 512", "part=data 0512"), "not a whole number"),
    (lambda t: t.replace("disk.wipe=true", "disk.wipe=yes"), "disk.wipe must be true or false"),
    (lambda t: t[:-1], "does not end with a newline"),
    # Found by the property tests: the busybox reader refuses these, so the Python reader must too.
    (lambda t: t.replace("-----BEGIN CERTIFICATE-----\n", "-----BEGIN CERTIFICATE-----\npart=1 \n", 1),
     "section ca is not plain PEM"),
    (lambda t: t.replace("-----END X509 CRL-----\n", "-----END X509 CRL-----\r\n", 1), "section crl is not plain PEM"),
    (lambda t: t.replace("part=data 512 xfs /data\n", "").replace("vg=vg0 pv\n",
                                                                      "vg=vg0 pv\npart=data 512 xfs /data\n"),
     "a part= line after the volume group"),
])
def test_decoding_is_strict(mutate: object, message: str) -> None:
    text = gzip.decompress(encode(document()).blob).decode()
    assert callable(mutate)
    with pytest.raises(InputError, match=message):
        decode(gzip.compress(mutate(text).encode()))


def test_truncated_or_foreign_blobs_are_refused() -> None:
    blob = encode(document()).blob
    with pytest.raises(InputError, match="not a gzip-compressed bootkiln document"):
        decode(blob[: len(blob) // 2])
    with pytest.raises(InputError, match="not a gzip-compressed bootkiln document"):
        decode(b"#cloud-config\n")
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    with pytest.raises(InputError, match="larger than a user-data document"):
        decode(bomb.compress(bytes(2 << 20)) + bomb.flush())


def test_host_names_are_checked_before_certificates_are_made() -> None:
    with pytest.raises(InputError, match="no hostname for the user-data") as caught:
        host_names(UserdataSettings(), None, where="p.toml")
    assert "--hostname" in caught.value.hint
    with pytest.raises(InputError, match=r"key 'userdata\.puppet\.server' is not set"):
        host_names(UserdataSettings(hostname="a.example.com"), None, where="p.toml")
    settings = UserdataSettings(puppet=PuppetSettings(server="puppet.example.com"))
    with pytest.raises(InputError, match="'Web_1' cannot be a hostname"):
        host_names(settings, "Web_1", where="p.toml")
    names = host_names(settings.model_copy(update={"puppet": PuppetSettings(server="p.example.com",
                                                                            certname="node-7")}), "h.example.com",
                       where="p.toml")
    assert (names.hostname, names.certname, names.server) == ("h.example.com", "node-7", "p.example.com")


def test_invoke_userdata_writes_a_private_file_and_prints_only_sizes(
        write_profile: WriteProfile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BOOTKILN_OUT", str(tmp_path / "out"))
    path = write_profile('[userdata]\nkey_type = "ec-p256"\n[userdata.puppet]\nserver = "puppet.example.com"\n')
    assert installer_commands.userdata(str(path), "db1.example.com") == 0
    output = capsys.readouterr().out
    written = tmp_path / "out" / "profile" / "userdata" / "db1.example.com.gz"
    assert written.stat().st_mode & 0o777 == 0o600
    doc = decode(written.read_bytes())
    assert doc.hostname == "db1.example.com"
    assert "PRIVATE KEY" not in output and doc.certs.key.get_secret_value().splitlines()[1] not in output
    assert "gzip framing" in output and "EC2 limit 16,384 bytes" in output and str(written) in output
    key_file = Path(os.environ["BOOTKILN_PKI"]) / "profile" / "hosts" / "db1.example.com.key"
    assert key_file.stat().st_mode & 0o777 == 0o600

    assert installer_commands.userdata(str(path)) == 2
    assert "no hostname for the user-data" in capsys.readouterr().out
