"""Instance user-data for the installer: its schema, its wire format, and EC2's 16 KB budget.

The installer's initramfs reads this document with nothing but busybox, so the wire format is
gzip of a line-oriented text: `key=value` lines, one record per partition or logical volume with
space-separated fields, then the certificates as PEM between `begin=<part>` and `end=<part>`
lines. docs/userdata.md specifies it and explains the choice; the installer's reader in busybox sh
is overlays/initramfs-base/lib/bootkiln/userdata-read.sh.

This module is pure: no files, no network, no cryptography (bootkiln.installer.pki makes and checks the
certificates). The settings the document is made from (disk layout, Puppet, certificate files)
are the profile's `[userdata]` table, in profile/userdata.py.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import (
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from bootkiln.errors import InputError
from bootkiln.profile.model import StrictModel
from bootkiln.profile.userdata import Certname, DiskLayout, Hostname, PuppetEnvironment, UserdataSettings

USERDATA_VERSION: Final = 1
MAGIC = "#bootkiln-userdata"
# EC2 refuses user-data over 16 KB, counted before the base64 encoding the API adds.
EC2_USERDATA_LIMIT = 16384
# A document is a few KB; anything that inflates past this is not one of ours.
MAX_DECOMPRESSED = 1 << 20

_HOSTNAME: TypeAdapter[str] = TypeAdapter(Hostname)

# --- the document -------------------------------------------------------------------------------
PEM_LINE = re.compile(r"^[A-Za-z0-9+/=]{1,76}$")
PEM_BOUNDARY = re.compile(r"^-----(BEGIN|END) ([A-Z0-9 ]+)-----$")
KEY_LABELS = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY")


def normalise_pem(text: str, labels: tuple[str, ...], *, many: bool, what: str) -> str:
    """PEM blocks with LF line endings and nothing else: the reader checks them line by line."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").strip().split("\n")]
    leading = len(text) - len(text.lstrip())
    first_line = text[:leading].replace("\r\n", "\n").count("\n") + 1
    blocks = 0
    inside: str | None = None
    for number, line in enumerate(lines, start=first_line):
        boundary = PEM_BOUNDARY.match(line)
        if boundary and boundary[1] == "BEGIN" and inside is None:
            if boundary[2] not in labels:
                raise ValueError(f"{what}: expected a PEM {' or '.join(labels)}, found {boundary[2]}")
            inside = boundary[2]
        elif boundary and boundary[1] == "END" and boundary[2] == inside:
            inside = None
            blocks += 1
        elif inside is None or not PEM_LINE.match(line):
            hint = " (an encrypted key: the installer cannot decrypt it)" if "Proc-Type" in line else ""
            # Never quote the line: a key's lines are secret, and a key given as a certificate by mistake too.
            raise ValueError(f"{what}: not a plain PEM {labels[0]}: unexpected line {number} (PEM lines "
                             f"are BEGIN/END boundaries and base64 of at most 76 characters){hint}")
    if inside is not None or blocks == 0:
        raise ValueError(f"{what}: no complete PEM {labels[0]} block")
    if blocks > 1 and not many:
        raise ValueError(f"{what}: holds {blocks} PEM blocks, expected one")
    return "\n".join(lines) + "\n"


class PuppetConfig(StrictModel):
    server: Hostname
    environment: PuppetEnvironment
    certname: Certname


class Certificates(StrictModel):
    ca: str = Field(description="the CA certificate (a chain is allowed)")
    crl: str
    cert: str
    key: SecretStr = Field(description="the host's private key; never printed or logged")

    @field_validator("ca")
    @classmethod
    def _ca(cls, value: str) -> str:
        return normalise_pem(value, ("CERTIFICATE",), many=True, what="certs.ca")

    @field_validator("crl")
    @classmethod
    def _crl(cls, value: str) -> str:
        return normalise_pem(value, ("X509 CRL",), many=True, what="certs.crl")

    @field_validator("cert")
    @classmethod
    def _cert(cls, value: str) -> str:
        return normalise_pem(value, ("CERTIFICATE",), many=False, what="certs.cert")

    @field_validator("key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        return SecretStr(normalise_pem(value.get_secret_value(), KEY_LABELS, many=False, what="certs.key"))


class UserData(StrictModel):
    """The document an instance receives. Version 1; docs/userdata.md is its specification."""

    version: Literal[1] = USERDATA_VERSION
    hostname: Hostname
    disk: DiskLayout
    puppet: PuppetConfig
    certs: Certificates


@dataclass(frozen=True)
class HostNames:
    hostname: str
    certname: str
    server: str


def host_names(settings: UserdataSettings, hostname: str | None, *, where: str) -> HostNames:
    """Who the document is for, checked before any certificate is made for that name."""
    name = hostname or settings.hostname
    if name is None:
        raise InputError(f"{where}: no hostname for the user-data",
                         hint="pass --hostname, or set userdata.hostname in the profile")
    if settings.puppet.server is None:
        raise InputError(f"{where}: key 'userdata.puppet.server' is not set",
                         hint="set it to the Puppet server's hostname, e.g. puppet.example.com")
    try:
        PuppetConfig(server=settings.puppet.server, environment=settings.puppet.environment,
                     certname=settings.puppet.certname or name)
        checked = _HOSTNAME.validate_python(name)
    except ValidationError as exc:
        raise InputError(f"{where}: {name!r} cannot be a hostname and Puppet certname: "
                         f"{exc.errors()[0]['msg']}",
                         hint="hostnames are lowercase DNS names, e.g. web1.example.com") from None
    return HostNames(checked, settings.puppet.certname or checked, settings.puppet.server)


def render(settings: UserdataSettings, *, names: HostNames, certs: Certificates) -> UserData:
    """The document for one host: the profile's settings with its names and certificates filled in."""
    return UserData(hostname=names.hostname, disk=settings.disk, certs=certs,
                    puppet=PuppetConfig(server=names.server, environment=settings.puppet.environment,
                                        certname=names.certname))


# --- wire format --------------------------------------------------------------------------------
SECTIONS = ("ca", "crl", "cert", "key")


def text_parts(doc: UserData) -> list[tuple[str, str]]:
    """The document as named pieces of text; concatenated in this order they are the wire text."""
    disk = doc.disk
    layout = [f"disk.device={disk.device}", f"disk.wipe={'true' if disk.wipe else 'false'}"]
    layout += [f"part={p.name} {p.size} {p.filesystem} {p.mountpoint or '-'}" for p in disk.partitions]
    if disk.volume_group is not None:
        layout.append(f"vg={disk.volume_group.name} {disk.physical_volume}")
        layout += [f"lv={lv.name} {lv.size} {lv.filesystem} {lv.mountpoint or '-'}"
                   for lv in disk.volume_group.logical_volumes]
    puppet = [f"puppet.server={doc.puppet.server}", f"puppet.environment={doc.puppet.environment}",
              f"puppet.certname={doc.puppet.certname}"]
    pems = {"ca": doc.certs.ca, "crl": doc.certs.crl, "cert": doc.certs.cert,
            "key": doc.certs.key.get_secret_value()}
    parts = [("header", f"{MAGIC}\nversion={doc.version}\nhostname={doc.hostname}\n"),
             ("disk", "\n".join(layout) + "\n"), ("puppet", "\n".join(puppet) + "\n")]
    parts += [(name, f"begin={name}\n{pems[name]}end={name}\n") for name in SECTIONS]
    return parts


@dataclass(frozen=True)
class PartSize:
    name: str
    raw: int
    compressed: int


@dataclass(frozen=True)
class EncodedUserData:
    blob: bytes
    parts: tuple[PartSize, ...]

    @property
    def size(self) -> int:
        return len(self.blob)

    def report(self, limit: int = EC2_USERDATA_LIMIT) -> list[str]:
        """The per-part budget: raw and compressed bytes, and each part's share of the limit."""
        lines = [f"{'part':<14}{'raw bytes':>10}{'gzip bytes':>12}{'of limit':>10}"]
        for part in self.parts:
            lines.append(f"{part.name:<14}{part.raw:>10,}{part.compressed:>12,}{part.compressed / limit:>10.1%}")
        raw = sum(part.raw for part in self.parts)
        lines.append(f"{'total':<14}{raw:>10,}{self.size:>12,}{self.size / limit:>10.1%}")
        left = limit - self.size
        lines.append(f"EC2 limit {limit:,} bytes: {abs(left):,} bytes {'left' if left >= 0 else 'over'}")
        return lines


def encode(doc: UserData) -> EncodedUserData:
    """gzip of the wire text, with each part's exact share of the compressed bytes.

    A sync flush after each part ends its deflate output on a byte boundary, so the compressed
    sizes add up exactly; the dictionary is kept, so later parts still compress against earlier ones.
    No file name and mtime 0 in the gzip header: the same document gives the same bytes.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31, 9)
    chunks: list[bytes] = []
    sizes: list[PartSize] = []
    framing = 0
    for index, (name, text) in enumerate(text_parts(doc)):
        data = text.encode("ascii")
        out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if index == 0:
            framing += 10  # the gzip header is emitted with the first output
        sizes.append(PartSize(name, len(data), len(out) - (10 if index == 0 else 0)))
        chunks.append(out)
    tail = compressor.flush(zlib.Z_FINISH)
    chunks.append(tail)
    sizes.append(PartSize("gzip framing", 0, framing + len(tail)))
    return EncodedUserData(b"".join(chunks), tuple(sizes))


class UserdataTooLarge(InputError):
    def __init__(self, encoded: EncodedUserData, limit: int) -> None:
        biggest = max(encoded.parts, key=lambda part: part.compressed)
        super().__init__(
            f"user-data is {encoded.size:,} bytes compressed, over EC2's {limit:,}-byte limit by "
            f"{encoded.size - limit:,} bytes",
            hint=f"the largest part is {biggest.name} ({biggest.compressed:,} bytes): shrink it "
                 "(a CRL with fewer entries, an EC key with userdata.key_type = 'ec-p256', a shorter CA chain)")
        self.encoded = encoded
        self.limit = limit

    def details(self) -> list[str]:
        return self.encoded.report(self.limit)


def check_budget(encoded: EncodedUserData, limit: int = EC2_USERDATA_LIMIT) -> None:
    if encoded.size > limit:
        raise UserdataTooLarge(encoded, limit)


RECORD = re.compile(r"^(part|lv)=(\S+) (\S+) (\S+) (\S+)$")


def decode(blob: bytes) -> UserData:
    """Parse and validate a document, as strictly as the busybox reader does."""
    try:
        decompressor = zlib.decompressobj(31)
        raw = decompressor.decompress(blob, MAX_DECOMPRESSED)
        if decompressor.unconsumed_tail or not decompressor.eof:
            raise ValueError("truncated, or larger than a user-data document can be")
        text = raw.decode("ascii")
    except (zlib.error, ValueError) as exc:
        raise InputError(f"user-data is not a gzip-compressed bootkiln document: {exc}") from None
    lines = text.split("\n")
    if lines[-1] != "":
        raise InputError("user-data does not end with a newline (truncated?)")
    lines.pop()
    if lines[:1] != [MAGIC]:
        raise InputError(f"user-data does not start with {MAGIC!r}")
    values: dict[str, str] = {}
    partitions: list[dict[str, Any]] = []
    logical: list[dict[str, Any]] = []
    group: dict[str, Any] | None = None
    pems: dict[str, list[str]] = {}
    section: str | None = None
    physical = ""
    for number, line in enumerate(lines[1:], start=2):
        if section is not None:
            if line == f"end={section}":
                section = None
            elif line != line.rstrip():
                # The busybox reader takes PEM lines as they are; a trailing space or CR is not PEM there.
                raise InputError(f"user-data line {number}: section {section} is not plain PEM (trailing space)")
            else:
                pems[section].append(line)
            continue
        key, sep, value = line.partition("=")
        if not sep:
            # Never quote a line: the document carries the host's private key.
            raise InputError(f"user-data line {number}: not key=value")
        if key == "begin" and value in SECTIONS and value not in pems:
            section = value
            pems[value] = []
        elif (record := RECORD.match(line)) is not None:
            kind, name, size, filesystem, mount = record.groups()
            if kind == "part" and (group is not None or logical):
                raise InputError(f"user-data line {number}: a part= line after the volume group")
            entry = {"name": name, "size": "rest" if size == "rest" else _int(size, number),
                     "filesystem": filesystem, "mountpoint": None if mount == "-" else mount}
            (partitions if kind == "part" else logical).append(entry)
        elif key == "vg" and group is None and len(value.split(" ")) == 2:
            group = {"name": value.split(" ")[0]}
            physical = value.split(" ")[1]
        elif key in ("version", "hostname", "disk.device", "disk.wipe", "puppet.server", "puppet.environment",
                     "puppet.certname") and key not in values:
            values[key] = value
        else:
            raise InputError(f"user-data line {number}: unexpected or repeated line")
    if section is not None:
        raise InputError(f"user-data: section {section!r} has no end={section} line")
    if values.get("version") != str(USERDATA_VERSION):
        raise InputError(f"user-data version {values.get('version')!r} is not supported (this bootkiln reads "
                         f"version {USERDATA_VERSION})")
    if values.get("disk.wipe") not in ("true", "false"):
        raise InputError(f"user-data: disk.wipe must be true or false, got {values.get('disk.wipe')!r}")
    if group is not None:
        group["logical_volumes"] = logical
        lvm = [p["name"] for p in partitions if p["filesystem"] == "lvm"]
        if lvm != [physical]:
            raise InputError(f"user-data: vg= names physical volume {physical!r}, but the lvm partitions are {lvm}")
    elif logical:
        raise InputError("user-data: lv= lines without a vg= line")
    try:
        return UserData.model_validate({
            "version": USERDATA_VERSION, "hostname": values.get("hostname"),
            "disk": {"device": values.get("disk.device"), "wipe": values["disk.wipe"] == "true",
                     "partitions": partitions, "volume_group": group},
            "puppet": {"server": values.get("puppet.server"), "environment": values.get("puppet.environment"),
                       "certname": values.get("puppet.certname")},
            "certs": {name: "\n".join(pems[name]) + "\n" if name in pems else None for name in SECTIONS},
        })
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InputError(f"user-data is not valid: {problems}") from None


def _int(text: str, line: int) -> int:
    # As the busybox reader: no sign, no leading zero ("007" is refused there, so here too).
    if not re.fullmatch(r"[1-9][0-9]*", text):
        raise InputError(f"user-data line {line}: size {text!r} is not a whole number of MiB or 'rest'")
    return int(text)
