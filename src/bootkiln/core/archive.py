"""The Debian archive state a build pins to, and the SOURCE_DATE_EPOCH derived from it.

Time never comes from the clock: it is the pinned snapshot's timestamp, or else the Date of the
mirror's Release file. The Release file's hash also goes into cache keys, so a new archive state
rebuilds and an unchanged one reuses.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from bootkiln.errors import EnvironmentProblem, InputError
from bootkiln.profile.schema import SNAPSHOT_FORMAT, DebianSettings

SNAPSHOT_HOST = "https://snapshot.debian.org/archive"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
RETRY_DELAYS: Sequence[float] = (1.0, 2.0, 4.0)

Fetch = Callable[[str], bytes]
# A server that answers these knows the URL and says there is nothing there: retrying cannot help.
NOT_FOUND = (404, 410)
# Debian's codenames and aliases, to suggest from when a mirror does not list its dists/ folder.
KNOWN_SUITES = ("stable", "testing", "unstable", "oldstable", "oldoldstable", "experimental", "sid", "forky",
                "trixie", "bookworm", "bullseye", "buster", "stretch", "jessie")
SUITE_SUFFIXES = ("-updates", "-backports", "-backports-sloppy", "-proposed-updates", "-security")


class NotFound(InputError):
    """The server answered that the URL does not exist (HTTP 404 or 410, or no such file for file://):
    the URL, made from the profile, is wrong."""

    def __init__(self, url: str, why: str, what: str) -> None:
        super().__init__(f"{what}: {url} does not exist ({why})",
                         hint="the server is reachable and says there is nothing there: check the profile's value")
        self.url = url
        self.why = why


@dataclass(frozen=True)
class ArchiveState:
    mirror: str
    suite: str
    snapshot: str | None
    release_sha256: str | None
    release_epoch: int
    source_date_epoch: int
    # The InRelease bytes release_sha256 was taken from, kept so the SBOM reads the package indexes this
    # exact file lists (bootkiln.attest.archive_index); not part of the state's identity.
    release_data: bytes | None = field(default=None, repr=False, compare=False)

    def identity(self) -> dict[str, object]:
        return {"mirror": self.mirror, "suite": self.suite, "snapshot": self.snapshot,
                "release_sha256": self.release_sha256, "source_date_epoch": self.source_date_epoch}


def archive_name(mirror: str) -> str:
    """snapshot.debian.org names archives after the mirror's last path part (debian, debian-security...)."""
    return mirror.rstrip("/").rsplit("/", 1)[-1] or "debian"


def snapshot_mirror(mirror: str, snapshot: str) -> str:
    return f"{SNAPSHOT_HOST}/{archive_name(mirror)}/{snapshot}"


def snapshot_epoch(snapshot: str) -> int:
    return int(datetime.strptime(snapshot, SNAPSHOT_FORMAT).replace(tzinfo=UTC).timestamp())


def release_date(release_text: str) -> int:
    for line in release_text.splitlines():
        if line.startswith("Date:"):
            moment = parsedate_to_datetime(line.split(":", 1)[1].strip())
            # "-0000" parses as naive; the archive means UTC, never the build host's zone.
            return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())
    raise EnvironmentProblem("the archive's Release file has no Date field",
                             hint="is the mirror a Debian archive?")


def _default_fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=20) as response:  # noqa: S310 - archive URLs are http(s)/file
        data: bytes = response.read()
        return data


def fetch_with_retries(url: str, *, what: str, fetch: Fetch = _default_fetch,
                       delays: Sequence[float] = RETRY_DELAYS) -> bytes:
    """Fetch a URL, retrying with backoff; the final error names what failed and where."""
    failures: list[str] = []
    for attempt in range(len(delays) + 1):
        try:
            return fetch(url)
        except urllib.error.HTTPError as exc:
            if exc.code in NOT_FOUND:
                raise NotFound(url, f"HTTP {exc.code}", what) from None
            failures.append(f"HTTP {exc.code}")
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            wait = float(retry_after) if retry_after and retry_after.isdigit() else None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            if isinstance(getattr(exc, "reason", None), FileNotFoundError):  # a file:// mirror
                raise NotFound(url, "no such file", what) from None
            failures.append(str(getattr(exc, "reason", exc)))
            wait = None
        if attempt < len(delays):
            time.sleep(wait if wait is not None else delays[attempt])
    raise EnvironmentProblem(
        f"{what}: {url} failed after {len(failures)} attempts ({'; '.join(dict.fromkeys(failures))})",
        hint="check the profile's debian.mirror and debian.suite, and that this host reaches the mirror "
        "(proxy settings: http_proxy)",
    )


def resolve_archive(debian: DebianSettings, *, fetch: Fetch = _default_fetch,
                    delays: Sequence[float] = RETRY_DELAYS) -> ArchiveState:
    if debian.snapshot:
        # A snapshot never changes, so its timestamp alone pins it: no network needed to key a build.
        epoch = snapshot_epoch(debian.snapshot)
        return ArchiveState(
            mirror=snapshot_mirror(debian.mirror, debian.snapshot), suite=debian.suite,
            snapshot=debian.snapshot, release_sha256=None, release_epoch=epoch,
            source_date_epoch=debian.source_date_epoch if debian.source_date_epoch is not None else epoch,
        )
    url = f"{debian.mirror}/dists/{debian.suite}/InRelease"
    try:
        data = fetch_with_retries(
            url, what=f"suite {debian.suite!r} at mirror {debian.mirror}", fetch=fetch, delays=delays
        )
    except NotFound as exc:
        raise unknown_suite(debian, exc, fetch) from None
    epoch = release_date(data.decode("utf-8", "replace"))
    return ArchiveState(
        mirror=debian.mirror, suite=debian.suite, snapshot=None,
        release_sha256=hashlib.sha256(data).hexdigest(), release_epoch=epoch,
        source_date_epoch=debian.source_date_epoch if debian.source_date_epoch is not None else epoch,
        release_data=data,
    )


def unknown_suite(debian: DebianSettings, missing: NotFound, fetch: Fetch) -> InputError:
    """The mirror answered that the suite does not exist: the profile's mistake, with the suites it has."""
    available = listed_suites(debian.mirror, fetch)
    if available:
        close = difflib.get_close_matches(debian.suite, available, n=3, cutoff=0.6)
        hint = _did_you_mean(close) + f"the mirror has: {', '.join(available)}"
    else:
        close, aliases = suite_guesses(debian.suite)
        close = [name for name in close if _exists(debian.mirror, name, fetch)]
        aliases = [name for name in aliases if name not in close and _exists(debian.mirror, name, fetch)]
        if close or aliases:
            hint = _did_you_mean(close) + (f"the mirror also has: {', '.join(aliases)}" if aliases else "")
        else:
            hint = ("the mirror has none of the usual Debian suites either: check debian.mirror too "
                    f"(it should be a Debian archive, the folder that holds dists/, like {DEFAULT_MIRROR})")
    return InputError(f"key 'debian.suite': the mirror {debian.mirror} has no suite {debian.suite!r} "
                      f"({missing.url} does not exist: {missing.why})", hint=hint.strip())


def _did_you_mean(names: list[str]) -> str:
    return f"did you mean {' or '.join(repr(name) for name in names)}? " if names else ""


DEFAULT_MIRROR = "http://deb.debian.org/debian"


def listed_suites(mirror: str, fetch: Fetch) -> list[str]:
    """The suites in the mirror's dists/ folder listing, when it serves one (deb.debian.org does not)."""
    try:
        page = fetch(f"{mirror}/dists/").decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, TimeoutError, ValueError):
        return []
    names = re.findall(r'href="(?:\./)?([A-Za-z0-9][A-Za-z0-9._-]*)/"', page)
    return sorted(set(names))


def suite_guesses(suite: str) -> tuple[list[str], list[str]]:
    """Suites a typo most likely meant (its suffix such as -backports kept), and the usual aliases."""
    base, suffix = suite, ""
    for candidate in SUITE_SUFFIXES:
        if suite.endswith(candidate):
            base, suffix = suite.removesuffix(candidate), candidate
    close = [name + suffix for name in difflib.get_close_matches(base, KNOWN_SUITES, n=3, cutoff=0.6)]
    return close, ["stable", "testing", "unstable"]


def _exists(mirror: str, suite: str, fetch: Fetch) -> bool:
    try:
        fetch(f"{mirror}/dists/{suite}/Release")
    except (urllib.error.URLError, OSError, TimeoutError, ValueError):
        return False
    return True


def sources_list(state: ArchiveState, components: Sequence[str], *, source_packages: bool = False,
                 extra_lines: Sequence[str] = ()) -> str:
    """The sources.list every apt in a build uses (rootfs, kernel, busybox source): one archive state.

    A snapshot's Release files carry a Valid-Until long past; the pinned time is the point, so the
    check is off for that source only.
    """
    options = f"[signed-by={KEYRING}{' check-valid-until=no' if state.snapshot else ''}]"
    where = f"{state.mirror} {state.suite} {' '.join(components)}"
    lines = [f"deb {options} {where}"]
    if source_packages:
        lines.append(f"deb-src {options} {where}")
    lines.extend(extra_lines)
    return "".join(f"{line}\n" for line in lines)
