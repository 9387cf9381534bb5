"""Writing a file atomically: readers see the old content or the new, and a failure leaves nothing behind.

Private files (keys, user-data) get their mode at creation, before any byte is written, so a key is
never readable by others even for a moment. The temporary file sits beside the target (a rename
across filesystems is not atomic), and every failure path removes it: it may hold a private key.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path: Path, data: bytes | str, *, mode: int = 0o666, private_parent: bool = False) -> None:
    """Write `data` to `path` through a temporary file renamed into place.

    `mode` is passed to open(2), so the umask still applies (0o600 stays 0o600). With
    `private_parent`, folders made on the way are 0700. Raises IsADirectoryError when `path` is a
    folder, and any other OSError as it happens; the temporary file is gone in every case.
    """
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700 if private_parent else 0o777)
    payload = data.encode() if isinstance(data, str) else data
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        temporary.replace(path)
    except BaseException:
        # Also on Ctrl-C: the temporary file may hold a private key.
        temporary.unlink(missing_ok=True)
        raise
