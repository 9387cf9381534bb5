"""DSSE envelopes, checked both ways against securesystemslib, an implementation nobody here wrote."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, SSlibKey

from bootkiln.attest import dsse
from bootkiln.attest.keys import PrivateKey, keyid
from bootkiln.errors import InputError

PAYLOAD = b'{"_type": "https://in-toto.io/Statement/v1"}'


def keys() -> list[PrivateKey]:
    return [ed25519.Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1())]


def test_pae_matches_the_specification_example() -> None:
    # From the DSSE protocol document.
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world")
    assert dsse.pae("t", b"") == b"DSSEv1 1 t 0 "


@pytest.mark.parametrize("key", keys(), ids=["ed25519", "ecdsa-p256"])
def test_securesystemslib_verifies_bootkilns_envelopes(key: PrivateKey) -> None:
    envelope = dsse.sign(PAYLOAD, key)
    theirs = Envelope.from_dict(json.loads(dsse.envelope_bytes(envelope)))
    assert theirs.pae() == dsse.pae(dsse.IN_TOTO_PAYLOAD, PAYLOAD)
    verified = theirs.verify([SSlibKey.from_crypto(key.public_key(), keyid=keyid(key.public_key()))], 1)
    assert set(verified) == {keyid(key.public_key())}
    other = SSlibKey.from_crypto(keys()[0].public_key(), keyid=keyid(key.public_key()))
    with pytest.raises(Exception):  # noqa: B017 - securesystemslib's own VerificationError
        theirs.verify([other], 1)


@pytest.mark.parametrize("key", keys(), ids=["ed25519", "ecdsa-p256"])
def test_bootkiln_verifies_securesystemslibs_envelopes(key: PrivateKey) -> None:
    signer = CryptoSigner(key)
    theirs = Envelope(PAYLOAD, dsse.IN_TOTO_PAYLOAD, {})
    theirs.sign(signer)
    data = json.dumps(theirs.to_dict()).encode()
    assert dsse.verify(data, key.public_key(), "theirs.json") == PAYLOAD


@pytest.mark.parametrize("key", keys(), ids=["ed25519", "ecdsa-p256"])
def test_a_wrong_key_is_named_as_such(key: PrivateKey) -> None:
    data = dsse.envelope_bytes(dsse.sign(PAYLOAD, key))
    other = keys()[1].public_key()
    with pytest.raises(InputError, match="signed by another key"):
        dsse.verify(data, other, "p.json")


def _edit(data: bytes, **changes: object) -> bytes:
    envelope = json.loads(data)
    envelope.update(changes)
    return json.dumps(envelope).encode()


def test_a_changed_payload_or_type_or_signature_fails() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    data = dsse.envelope_bytes(dsse.sign(PAYLOAD, key))
    altered = base64.b64encode(PAYLOAD.replace(b"Statement", b"Statemenu")).decode()
    with pytest.raises(InputError, match="altered after it was signed"):
        dsse.verify(_edit(data, payload=altered), key.public_key(), "p.json")
    with pytest.raises(InputError, match="altered after it was signed"):
        dsse.verify(_edit(data, payloadType="text/plain"), key.public_key(), "p.json")
    signature = json.loads(data)["signatures"][0]
    flipped = bytearray(base64.b64decode(signature["sig"]))
    flipped[3] ^= 1
    bad = [{**signature, "sig": base64.b64encode(bytes(flipped)).decode()}]
    with pytest.raises(InputError, match="altered"):
        dsse.verify(_edit(data, signatures=bad), key.public_key(), "p.json")


def test_a_missing_or_malformed_signature_is_refused() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    data = dsse.envelope_bytes(dsse.sign(PAYLOAD, key))
    signatures: list[object] | None
    for signatures in ([], None):
        with pytest.raises(InputError, match="no signature"):
            dsse.verify(_edit(data, signatures=signatures), key.public_key(), "p.json")
    with pytest.raises(InputError, match="not valid base64"):
        dsse.verify(_edit(data, signatures=[{"keyid": "x", "sig": "%%%"}]), key.public_key(), "p.json")
    with pytest.raises(InputError, match="not a JSON DSSE envelope"):
        dsse.verify(b"\x00garbage", key.public_key(), "p.json")


def test_signing_twice_with_ed25519_gives_the_same_bytes(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    assert dsse.envelope_bytes(dsse.sign(PAYLOAD, key)) == dsse.envelope_bytes(dsse.sign(PAYLOAD, key))
