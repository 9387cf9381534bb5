"""Signing the remote stage cache's indexes with the build's signing key (DSSE, as provenance is signed).

A signed index lets a machine refuse entries that someone without the key put in the bucket
(cache.require_signed): the index names every file's sha256, so signing it covers the files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bootkiln.attest import dsse
from bootkiln.attest.keys import PrivateKey
from bootkiln.errors import InputError

PAYLOAD_TYPE = "application/vnd.bootkiln.cache-index+json"


def signer(key: PrivateKey | None) -> Callable[[bytes], dict[str, Any]] | None:
    if key is None:
        return None
    return lambda payload: dsse.sign(payload, key, PAYLOAD_TYPE)


def verifier(key: PrivateKey | None) -> Callable[[bytes, dict[str, Any]], bool] | None:
    if key is None:
        return None
    public = key.public_key()

    def verify(payload: bytes, envelope: dict[str, Any]) -> bool:
        try:
            signed = dsse.verify(json.dumps(envelope).encode(), public, "remote cache index")
        except InputError:
            return False
        return signed == payload and dsse.parse(json.dumps(envelope).encode(), "remote cache index")[0] == PAYLOAD_TYPE

    return verify
