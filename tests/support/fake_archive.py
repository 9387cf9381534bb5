"""A small Debian archive on disk: an InRelease listing SHA256s, and xz-compressed Packages indexes.

Served by file:// or by a 127.0.0.1 HTTP server (serve), so the SBOM's archive look-ups run the same
fetch code as a build.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import lzma
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from bootkiln.core.archive import ArchiveState

# name, version, architecture, .deb sha256, Source field ("" when the source is the package itself)
Entry = tuple[str, str, str, str, str]


def packages_text(entries: Sequence[Entry]) -> str:
    paragraphs = []
    for name, version, arch, sha, source in entries:
        lines = [f"Package: {name}"] + ([f"Source: {source}"] if source else []) + [
            f"Version: {version}", f"Architecture: {arch}", "Maintainer: Debian <debian@example.org>",
            "Description: a package", " with a long description", f"Filename: pool/main/{name}.deb",
            "Size: 1234", f"MD5sum: {'0' * 32}", f"SHA256: {sha}"]
        paragraphs.append("\n".join(lines) + "\n")
    return "\n".join(paragraphs)


def write_archive(root: Path, suite: str, indexes: Mapping[str, Sequence[Entry]]) -> bytes:
    """dists/SUITE/ with one Packages.xz per 'component/arch' key; returns the InRelease bytes."""
    dists = root / "dists" / suite
    listed = []
    for where, entries in indexes.items():
        component, arch = where.split("/")
        path = dists / component / f"binary-{arch}" / "Packages.xz"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = lzma.compress(packages_text(entries).encode())
        path.write_bytes(data)
        listed.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {component}/binary-{arch}/Packages.xz")
    release = ("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n"
               f"Origin: Debian\nSuite: {suite}\nDate: Tue, 14 Nov 2023 22:13:20 UTC\n"
               "MD5Sum:\n 00000000000000000000000000000000 1 main/binary-amd64/Release\nSHA256:\n"
               + "\n".join(listed) + "\n-----BEGIN PGP SIGNATURE-----\n\nnot checked here\n"
               "-----END PGP SIGNATURE-----\n").encode()
    (dists / "InRelease").write_bytes(release)
    return release


def pinned_state(mirror: str, suite: str, release: bytes, *, keep_bytes: bool = False) -> ArchiveState:
    """The archive state a build resolved: its Release sha256 (and, like resolve_archive, its bytes)."""
    return ArchiveState(mirror=mirror, suite=suite, snapshot=None, release_sha256=hashlib.sha256(release).hexdigest(),
                        release_epoch=1_700_000_000, source_date_epoch=1_700_000_000,
                        release_data=release if keep_bytes else None)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve(root: Path) -> Iterator[str]:
    """Serve a folder on 127.0.0.1; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
