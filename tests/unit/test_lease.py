"""Leases, judged without an engine: reaping takes only what is certainly dead, whatever host or PID namespace."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys

import pytest

from bootkiln.core.engine import OWNER_LABEL, Reaped, _why_dead, describe_reaped
from bootkiln.core.lease import (
    CLOCK_GRACE,
    DEFAULT_TTL,
    HOLDER_LABEL,
    LEASE_LABEL,
    TTL_LABEL,
    LeaseBook,
    LeaseRecord,
    engine_time,
    lease_ttl,
    process_gone,
    process_identity,
    record_of,
)
from bootkiln.errors import InputError

NOW = 1_800_000_000.0
HOST = socket.gethostname()


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def record(lease: str, age: float, ttl: float = 60.0, name: str = "") -> LeaseRecord:
    return LeaseRecord(name=name or f"bootkiln-lease-{lease}", lease=lease, holder="elsewhere:7",
                       created=NOW - age, ttl=ttl)


# --- the engine's clock ---------------------------------------------------------------------------

def test_engine_times_with_nanoseconds_and_zones() -> None:
    assert engine_time("2026-12-02T07:34:46.629096923Z") == pytest.approx(1796196886.629097)
    assert engine_time("2026-12-02T07:34:46Z") == 1796196886.0
    assert engine_time("2026-12-02T08:34:46+01:00") == 1796196886.0


@pytest.mark.parametrize("text", [None, "", "yesterday", "2026-12-02 07:34:46", "2026-13-02T07:34:46Z", 17])
def test_unusable_engine_times_are_none(text: object) -> None:
    assert engine_time(text) is None


# --- time to live ---------------------------------------------------------------------------------

def test_lease_ttl_defaults_and_reads_the_environment() -> None:
    assert lease_ttl({}) == DEFAULT_TTL
    assert lease_ttl({"BOOTKILN_LEASE_TTL": " 2.5 "}) == 2.5


@pytest.mark.parametrize("text", ["0", "-5", "nan", "inf", "soon", "0.5"])
def test_bad_lease_ttl_is_an_input_error_naming_the_variable(text: str) -> None:
    with pytest.raises(InputError, match="BOOTKILN_LEASE_TTL"):
        lease_ttl({"BOOTKILN_LEASE_TTL": text})


# --- records --------------------------------------------------------------------------------------

def test_only_volumes_with_a_ttl_label_are_lease_records() -> None:
    assert record_of({"Name": "bootkiln-busybox-1", "Labels": {LEASE_LABEL: "a"}}) is None
    assert record_of({"Name": "x", "Labels": None}) is None
    found = record_of({"Name": "bootkiln-lease-a-1", "CreatedAt": "2026-12-02T07:34:46Z",
                       "Labels": {LEASE_LABEL: "a", HOLDER_LABEL: "h:1", TTL_LABEL: "30"}})
    assert found == LeaseRecord("bootkiln-lease-a-1", "a", "h:1", 1796196886.0, 30.0)


def test_a_record_with_an_unreadable_stamp_or_ttl_never_expires() -> None:
    no_stamp = record_of({"Name": "n", "Labels": {LEASE_LABEL: "a", TTL_LABEL: "30"}})
    bad_ttl = record_of({"Name": "n", "CreatedAt": "2026-12-02T07:34:46Z",
                         "Labels": {LEASE_LABEL: "a", TTL_LABEL: "soon"}})
    assert no_stamp is not None and no_stamp.expires == math.inf
    assert bad_ttl is not None and bad_ttl.expires == math.inf


# --- who is dead ----------------------------------------------------------------------------------

def test_a_renewed_lease_is_alive_and_a_lapsed_one_dead() -> None:
    book = LeaseBook(NOW, (record("live", age=59), record("lapsed", age=60 + CLOCK_GRACE + 1)))
    assert book.why_dead("live") is None
    assert book.why_dead("lapsed") == "lease not renewed for 62s, its limit is 60s"
    assert [r.lease for r in book.dead_records()] == ["lapsed"]


def test_the_newest_record_decides() -> None:
    """Mid-renewal a lease has two records: the old one's age must not condemn it."""
    book = LeaseBook(NOW, (record("a", age=500, name="old"), record("a", age=1, name="new")))
    assert book.why_dead("a") is None
    assert book.dead_records() == []


def test_each_lease_keeps_its_own_ttl() -> None:
    book = LeaseBook(NOW, (record("short", age=5, ttl=2), record("long", age=5, ttl=3600)))
    assert book.why_dead("short") and not book.why_dead("long")


def test_no_record_means_dead_but_own_leases_and_an_unknown_clock_never() -> None:
    assert LeaseBook(NOW, ()).why_dead("gone") == "its lease record is gone"
    assert LeaseBook(NOW, (), own=frozenset({"mine"})).why_dead("mine") is None
    assert LeaseBook(None, (record("a", age=10_000),)).why_dead("a") is None


def test_a_live_lease_is_kept_even_if_its_pid_is_dead_on_this_host() -> None:
    """Another PID namespace (a container) on a host of the same name: its PID means nothing here."""
    owner = f"{HOST}:{dead_pid()}"
    labels = {LEASE_LABEL: "live", HOLDER_LABEL: owner, OWNER_LABEL: owner}
    book = LeaseBook(NOW, (record("live", age=1),))
    assert _why_dead(labels, book, HOST) is None


def test_a_lapsed_lease_is_dead_even_if_its_pid_is_alive_on_this_host() -> None:
    owner = f"{HOST}:{os.getpid()}"
    book = LeaseBook(NOW, (record("lapsed", age=600),))
    verdict = _why_dead({LEASE_LABEL: "lapsed", HOLDER_LABEL: owner}, book, HOST)
    assert verdict is not None and verdict[0] == owner


def test_objects_of_older_bootkiln_are_judged_by_pid_only_on_this_host() -> None:
    book = LeaseBook(NOW, ())
    gone = dead_pid()
    assert _why_dead({OWNER_LABEL: f"{HOST}:{gone}"}, book, HOST) == (f"{HOST}:{gone}",
                                                                      "its process is gone from this host")
    assert _why_dead({OWNER_LABEL: f"{HOST}:{os.getpid()}"}, book, HOST) is None
    assert _why_dead({OWNER_LABEL: f"another-{HOST}:{gone}"}, book, HOST) is None
    assert _why_dead({}, book, HOST) is None


def test_what_was_reaped_is_named_with_its_owner() -> None:
    text = describe_reaped([
        Reaped("container", "bootkiln-aaa", "h:1", "lease not renewed for 70s, its limit is 60s"),
        Reaped("volume", "bootkiln-busybox-bbb", "h:1", "lease not renewed for 70s, its limit is 60s"),
        Reaped("volume", "bootkiln-rootfs-ccc", "old:2", "its process is gone from this host"),
    ])
    assert text == ("removed what killed bootkiln builds left on the Docker engine: container bootkiln-aaa, "
                    "volume bootkiln-busybox-bbb of the build h:1 (lease not renewed for 70s, its limit is 60s); "
                    "volume bootkiln-rootfs-ccc of the build old:2 (its process is gone from this host)")


# --- a holder in our own PID namespace ------------------------------------------------------------

def in_another(identity: str, part: int) -> str:
    """The same identity with its boot id (part 0) or PID namespace (part 1) changed."""
    pieces = identity.rsplit("/", 2)
    pieces[part] = "0" + pieces[part]
    return "/".join(pieces)


def test_process_identity_names_boot_namespace_and_pid() -> None:
    here = process_identity()
    assert here is not None
    boot, namespace, pid = here.rsplit("/", 2)
    assert len(boot) == 36 and ":" in namespace and pid == str(os.getpid())


def test_a_gone_process_is_dead_only_in_our_namespace_on_this_boot() -> None:
    here = process_identity()
    assert here is not None
    gone = process_identity(dead_pid())
    assert gone is not None
    assert process_gone(gone, here)
    assert not process_gone(process_identity(os.getpid()) or "", here)
    assert not process_gone(in_another(gone, 0), here), "another boot (or machine): its PID means nothing"
    assert not process_gone(in_another(gone, 1), here), "another PID namespace: its PID means nothing"
    assert not process_gone(gone, None)
    for malformed in ("", "17", "a/b", f"{gone.rsplit('/', 1)[0]}/x", f"{gone.rsplit('/', 1)[0]}/0"):
        assert not process_gone(malformed, here)


def test_a_fresh_lease_whose_process_is_gone_here_is_dead_at_once() -> None:
    here = process_identity()
    gone = process_identity(dead_pid())
    assert gone is not None
    fresh = LeaseRecord("r", "a", "h:1", created=NOW, ttl=60, process=gone)
    assert LeaseBook(NOW, (fresh,), here=here).why_dead("a") == "its process is gone"
    assert LeaseBook(None, (fresh,), here=here).why_dead("a") == "its process is gone"
    elsewhere = LeaseRecord("r", "a", "h:1", created=NOW, ttl=60, process=in_another(gone, 1))
    assert LeaseBook(NOW, (elsewhere,), here=here).why_dead("a") is None
