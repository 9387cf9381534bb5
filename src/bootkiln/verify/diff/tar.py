"""tar archives: members by name, their metadata (pax headers included) and their contents."""

from __future__ import annotations

import tarfile
from pathlib import Path

from bootkiln.verify.diff.binary import copy_stream, sha256_stream
from bootkiln.verify.diff.report import Context, Entry, Extractor, Report, compare_entries, compare_fields, unique

_TAR_TYPES = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.LNKTYPE: "hard link",
              tarfile.SYMTYPE: "symlink", tarfile.CHRTYPE: "char device", tarfile.BLKTYPE: "block device",
              tarfile.DIRTYPE: "dir", tarfile.FIFOTYPE: "fifo", tarfile.CONTTYPE: "contiguous file"}
# pax keys whose values tarfile already folds into the member's own fields.
_PAX_FOLDED = {"path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime"}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _tar_entries(archive: tarfile.TarFile) -> tuple[list[Entry], dict[str, tarfile.TarInfo]]:
    entries: list[Entry] = []
    members: dict[str, tarfile.TarInfo] = {}
    seen: dict[str, int] = {}
    for member in archive:
        name = unique(member.name, seen)
        fields = {"type": _TAR_TYPES.get(member.type, member.type.decode("latin-1")), "mode": f"{member.mode:04o}",
                  "uid": str(member.uid), "gid": str(member.gid), "uname": repr(member.uname),
                  "gname": repr(member.gname), "mtime": _number(member.mtime), "size": str(member.size)}
        if member.issym() or member.islnk():
            fields["link target"] = member.linkname
        if member.ischr() or member.isblk():
            fields["device"] = f"{member.devmajor}:{member.devminor}"
        for key, value in sorted(member.pax_headers.items()):
            if key not in _PAX_FOLDED:
                fields[f"pax header {key}"] = repr(value)
        digest = None
        if member.isreg():
            stream = archive.extractfile(member)
            assert stream is not None  # a regular member always has a stream
            digest = sha256_stream(stream, member.size)
        entries.append(Entry(name, fields, digest, member.size))
        members[name] = member
    return entries, members


def compare_tar(label: str, first: Path, second: Path, report: Report, ctx: Context) -> None:
    with tarfile.open(first, mode="r:") as one, tarfile.open(second, mode="r:") as two:
        entries_one, members_one = _tar_entries(one)
        entries_two, members_two = _tar_entries(two)
        compare_fields(f"{label}: global pax header", one.pax_headers, two.pax_headers, report)

        def extractor(archive: tarfile.TarFile, members: dict[str, tarfile.TarInfo]) -> Extractor:
            def extract(name: str, destination: Path) -> None:
                stream = archive.extractfile(members[name])
                assert stream is not None
                copy_stream(stream, destination)
            return extract

        compare_entries(label, entries_one, entries_two, report, ctx,
                        extract=(extractor(one, members_one), extractor(two, members_two)))
