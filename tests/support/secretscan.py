"""Find private key material in files, nested containers and text, wherever it hides.

A key is looked for in every form it could leak in: its PEM body lines, its DER (traditional and
PKCS#8), its bare secret numbers, and base64 of those numbers at every alignment (so a PEM re-wrapped
at another width is found too). Only the parts that carry secret bytes are used: a PEM line or a
base64 window made of public-key bytes alone also appears in the certificate and public key files,
which are not secrets.

Containers are opened and their members scanned in turn: gzip, xz and zstd streams, tar, cpio
(newc, with concatenated archives as in an initramfs), ISO 9660 (through pycdlib) and GPT disk images
or bare ext4 filesystems (through debugfs). Every object is also scanned raw, so an uncompressed key
inside a disk image or a FAT filesystem is found without unpacking it.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pycdlib
import zstandard
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bootkiln.errors import BootkilnError
from tests.support import diskread

CHUNK = 32 << 20
IN_MEMORY = 32 << 20  # members up to this size are scanned from memory, larger ones from a temporary file
WINDOW = 12  # bytes of a secret number per base64 needle: 16 characters, 96 bits, never a coincidence
MAX_DEPTH = 8
PEM_KEY = re.compile(rb"-----BEGIN ((?:RSA |EC )?PRIVATE KEY)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


@dataclass(frozen=True)
class PrivateKey:
    label: str
    needles: frozenset[bytes]


def _secret_numbers(key: object) -> list[bytes]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        return [key.private_numbers().private_value.to_bytes(size, "big")]
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        return [value.to_bytes((value.bit_length() + 7) // 8, "big") for value in (numbers.p, numbers.q)]
    raise TypeError(f"unsupported key type {type(key).__name__}")


def _secret_lines(der: bytes, secrets: list[bytes], width: int = 64) -> set[bytes]:
    """The base64 lines of `der` (as PEM wraps it) that hold at least one secret byte."""
    spans = [(start, start + len(secret)) for secret in secrets if (start := der.find(secret)) >= 0]
    text = base64.b64encode(der)
    lines = set()
    for offset in range(0, len(text), width):
        first, last = offset // 4 * 3, min((offset + width) // 4 * 3, len(der))
        if any(first < end and start < last for start, end in spans):
            lines.add(text[offset:offset + width])
    return lines


def private_key(label: str, pem: bytes) -> PrivateKey:
    """A key's needles, from its PEM file's bytes."""
    key = serialization.load_pem_private_key(pem, password=None)
    secrets = _secret_numbers(key)
    ders = [key.private_bytes(serialization.Encoding.DER, form, serialization.NoEncryption())
            for form in (serialization.PrivateFormat.TraditionalOpenSSL, serialization.PrivateFormat.PKCS8)]
    needles: set[bytes] = {*ders, *secrets}
    for der in ders:
        needles |= _secret_lines(der, secrets)
    match = PEM_KEY.search(pem)
    body = match[2].split() if match else []
    if body:  # the file's own body lines, however wide it was wrapped
        needles |= _secret_lines(base64.b64decode(b"".join(body)), secrets, width=len(body[0]))
    for secret in secrets:
        for start in range(len(secret) - WINDOW + 1):
            needles.add(base64.b64encode(secret[start:start + WINDOW]))
    return PrivateKey(label, frozenset(needles))


def key_files(root: Path) -> Iterator[Path]:
    """Files under `root` that hold a PEM private key (not following links)."""
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file() or path.stat().st_size > 1 << 20:
                continue
            if PEM_KEY.search(path.read_bytes()):
                yield path


@dataclass(frozen=True)
class Finding:
    location: tuple[str, ...]  # the file (or text), then each member opened to get there
    key: str

    def __str__(self) -> str:
        return f"{self.key} in {' -> '.join(self.location)}"


@dataclass
class Scanner:
    keys: list[PrivateKey]
    scratch: Path
    findings: list[Finding] = field(default_factory=list)
    opened: dict[str, int] = field(default_factory=dict)  # container kind -> how many were opened
    unreadable: list[str] = field(default_factory=list)
    _memo: dict[bytes, list[Finding]] = field(default_factory=dict)
    _inodes: dict[tuple[int, int], list[Finding]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._needles = [(needle, key.label) for key in self.keys for needle in sorted(key.needles)]
        self._overlap = max(len(needle) for needle, _ in self._needles) - 1

    # --- entry points -----------------------------------------------------------------------------
    def scan_tree(self, root: Path) -> None:
        for folder, dirs, names in os.walk(root):
            dirs.sort()
            for name in sorted(names):
                path = Path(folder) / name
                mode = path.lstat().st_mode
                if stat.S_ISREG(mode):
                    self.scan_file(path)

    def scan_file(self, path: Path) -> None:
        info = path.stat()
        inode = (info.st_dev, info.st_ino)  # out/ holds hard links to cache entries: read them once
        if inode not in self._inodes:
            self._inodes[inode] = self._scan(path, None, depth=0)
        self._report((str(path),), self._inodes[inode])

    def scan_text(self, text: str, label: str) -> None:
        self._report((label,), self._scan(None, text.encode(errors="surrogateescape"), depth=0))

    # --- the work ---------------------------------------------------------------------------------
    def _report(self, location: tuple[str, ...], relative: list[Finding]) -> None:
        self.findings.extend(Finding((*location, *finding.location), finding.key) for finding in relative)

    def _scan(self, path: Path | None, data: bytes | None, depth: int) -> list[Finding]:
        """Raw search, then the members of whatever container this is: findings as member paths
        relative to this object (an empty location is the object itself)."""
        digest = hashlib.blake2b(digest_size=20)
        found: set[str] = set()
        head = b""
        with self._open(path, data) as handle:
            tail = b""
            while chunk := handle.read(CHUNK):
                if not head:
                    head = chunk[:1 << 16]
                digest.update(chunk)
                window = tail + chunk
                found |= {label for needle, label in self._needles if label not in found and needle in window}
                tail = window[-self._overlap:]
        key = digest.digest()
        if key not in self._memo:  # the same content elsewhere: same findings, not unpacked again
            relative = [Finding((), label) for label in sorted(found)]
            if depth < MAX_DEPTH:
                for member, member_path, member_data in self._members(path, data, head):
                    relative += [Finding((member, *f.location), f.key)
                                 for f in self._scan(member_path, member_data, depth + 1)]
                    if member_path is not None:
                        member_path.unlink(missing_ok=True)
            self._memo[key] = relative
        return self._memo[key]

    @contextmanager
    def _open(self, path: Path | None, data: bytes | None) -> Iterator[BinaryIO]:
        if path is not None:
            with path.open("rb") as handle:
                yield handle
        else:
            yield io.BytesIO(data or b"")

    def _temporary(self) -> Path:
        handle, name = tempfile.mkstemp(dir=self.scratch)
        os.close(handle)
        return Path(name)

    def _member(self, name: str, stream: BinaryIO, size: int | None = None) -> tuple[str, Path | None, bytes | None]:
        """A member's content, in memory when small, else spilled to a temporary file."""
        if size is not None and size <= IN_MEMORY:
            return name, None, stream.read(size)
        path = self._temporary()
        with path.open("wb") as out:
            shutil.copyfileobj(stream, out, CHUNK)
        if path.stat().st_size <= IN_MEMORY:
            content = path.read_bytes()
            path.unlink()
            return name, None, content
        return name, path, None

    def _members(self, path: Path | None, data: bytes | None,
                 head: bytes) -> Iterator[tuple[str, Path | None, bytes | None]]:
        kind = _kind(head)
        if kind is None:
            return
        self.opened[kind] = self.opened.get(kind, 0) + 1
        try:
            with self._open(path, data) as handle:
                if kind in ("gzip", "xz", "zstd"):
                    yield self._member(f"({kind})", _decompressor(kind, handle))
                elif kind == "tar":
                    yield from self._tar_members(handle)
                elif kind == "cpio":
                    yield from self._cpio_members(handle)
                elif kind == "iso9660":
                    yield from self._iso_members(handle)
            if kind in ("gpt", "ext4") and path is None and data is not None:
                spilled = self._temporary()
                spilled.write_bytes(data)
                yield from self._disk_members(spilled, kind)
                spilled.unlink()
            elif kind in ("gpt", "ext4") and path is not None:
                yield from self._disk_members(path, kind)
        except (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError, tarfile.TarError, pycdlib.pycdlibexception
                .PyCdlibException, ValueError, BootkilnError) as exc:
            # A container we cannot open completely was still scanned raw; the caller decides.
            self.unreadable.append(f"{kind}: {type(exc).__name__}: {exc}")

    def _tar_members(self, handle: BinaryIO) -> Iterator[tuple[str, Path | None, bytes | None]]:
        with tarfile.open(fileobj=handle, mode="r:") as archive:
            for info in archive:
                if info.isfile():
                    member = archive.extractfile(info)
                    if member is not None:
                        yield self._member(info.name, member, info.size)  # type: ignore[arg-type]

    def _cpio_members(self, handle: BinaryIO) -> Iterator[tuple[str, Path | None, bytes | None]]:
        """newc archives one after another (an initramfs may append a compressed one)."""
        while True:
            header = handle.read(110)
            if len(header) < 110 or header[:6] not in (b"070701", b"070702"):
                rest = header.lstrip(b"\0") + handle.read()
                rest = rest.lstrip(b"\0")
                if rest:
                    yield "(after the cpio archive)", None, rest
                return
            name_size, file_size = int(header[94:102], 16), int(header[54:62], 16)
            name = handle.read(name_size)[:-1].decode(errors="replace")
            handle.read((4 - (110 + name_size) % 4) % 4)
            content = handle.read(file_size)
            handle.read((4 - file_size % 4) % 4)
            if name == "TRAILER!!!":
                continue
            mode = int(header[14:22], 16)
            if stat.S_ISREG(mode):
                yield name, None, content

    def _iso_members(self, handle: BinaryIO) -> Iterator[tuple[str, Path | None, bytes | None]]:
        iso = pycdlib.PyCdlib()
        iso.open_fp(handle)
        try:
            facade = "rr_path" if iso.has_rock_ridge() else "iso_path"
            for folder, _, names in iso.walk(**{facade: "/"}):
                for name in names:
                    member = f"{folder.rstrip('/')}/{name}"
                    buffer = self._temporary()
                    with buffer.open("wb") as out:
                        iso.get_file_from_iso_fp(out, **{facade: member})
                    with buffer.open("rb") as stream:
                        yield self._member(member, stream)
                    buffer.unlink()
        finally:
            iso.close()

    def _disk_members(self, image: Path, kind: str) -> Iterator[tuple[str, Path | None, bytes | None]]:
        """Each ext4 filesystem's files, through debugfs (the raw scan covered everything else)."""
        if kind == "ext4":
            yield from self._ext4_members(image, "")
            return
        for partition in diskread.read_gpt(image):
            filesystem = self._temporary()
            diskread.extract(image, [(partition.start, partition.size)], filesystem)
            if _kind(_read_head(filesystem)) == "ext4":
                yield from self._ext4_members(filesystem, f"{partition.name}:")
            filesystem.unlink()

    def _ext4_members(self, filesystem: Path, prefix: str) -> Iterator[tuple[str, Path | None, bytes | None]]:
        self.opened["ext4"] = self.opened.get("ext4", 0) + (prefix != "")  # a bare one was counted already
        tree = Path(tempfile.mkdtemp(dir=self.scratch))
        try:
            diskread.dump_ext4_tree(filesystem, tree, owners=False)
            for folder, _, names in os.walk(tree):
                for name in sorted(names):
                    member = Path(folder) / name
                    if stat.S_ISREG(member.lstat().st_mode):
                        with member.open("rb") as stream:
                            yield self._member(f"{prefix}/{member.relative_to(tree)}", stream,
                                               member.stat().st_size)
        finally:
            shutil.rmtree(tree, ignore_errors=True)


def _read_head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(1 << 16)


def _kind(head: bytes) -> str | None:
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head[:6] in (b"070701", b"070702"):
        return "cpio"
    if head[257:262] == b"ustar":
        return "tar"
    if head[0x8001:0x8006] == b"CD001":
        return "iso9660"
    if head[512:520] == b"EFI PART":
        return "gpt"
    if head[1080:1082] == b"\x53\xef":
        return "ext4"
    return None


def _decompressor(kind: str, handle: BinaryIO) -> BinaryIO:
    if kind == "gzip":
        return gzip.GzipFile(fileobj=handle)  # type: ignore[return-value]
    if kind == "xz":
        return lzma.LZMAFile(handle)  # type: ignore[return-value]
    return zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True)
