"""Dead Simple Signing Envelopes (DSSE v1): the pre-authentication encoding, signing and verifying.

Ed25519 signs the PAE directly; ECDSA P-256 signs its SHA-256 and stores the DER signature, as
securesystemslib and sigstore do, so other implementations verify bootkiln's envelopes.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from bootkiln.attest.keys import PrivateKey, PublicKey, keyid
from bootkiln.errors import InputError

IN_TOTO_PAYLOAD = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSEv1 SP LEN(type) SP type SP LEN(body) SP body, lengths in ASCII decimal bytes."""
    encoded_type = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(encoded_type), encoded_type, len(payload), payload)


def _sign_bytes(key: PrivateKey, message: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    return key.sign(message, ec.ECDSA(hashes.SHA256()))


def _verify_bytes(key: PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        else:
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def sign(payload: bytes, key: PrivateKey, payload_type: str = IN_TOTO_PAYLOAD) -> dict[str, Any]:
    signature = _sign_bytes(key, pae(payload_type, payload))
    return {"payload": base64.b64encode(payload).decode(), "payloadType": payload_type,
            "signatures": [{"keyid": keyid(key.public_key()), "sig": base64.b64encode(signature).decode()}]}


def envelope_bytes(envelope: dict[str, Any]) -> bytes:
    return (json.dumps(envelope, indent=2, sort_keys=True) + "\n").encode()


def _b64(value: object, what: str, where: str) -> bytes:
    if not isinstance(value, str):
        raise InputError(f"{where}: the envelope's {what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{where}: the envelope's {what} is not valid base64") from None


def parse(data: bytes, where: str) -> tuple[str, bytes, list[dict[str, Any]]]:
    """The payload type, payload and signatures of an envelope, refusing a malformed one."""
    try:
        envelope = json.loads(data)
    except ValueError:
        raise InputError(f"{where}: not a JSON DSSE envelope") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("payloadType"), str):
        raise InputError(f"{where}: not a DSSE envelope (no payloadType)")
    payload = _b64(envelope.get("payload"), "payload", where)
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise InputError(f"{where}: the envelope carries no signature",
                         hint="sign the build: set [signing] key in the profile or BOOTKILN_SIGNING_KEY")
    return envelope["payloadType"], payload, [s for s in signatures if isinstance(s, dict)]


def verify(data: bytes, key: PublicKey, where: str) -> bytes:
    """The payload of an envelope one of whose signatures this key made; InputError otherwise."""
    payload_type, payload, signatures = parse(data, where)
    message = pae(payload_type, payload)
    expected = keyid(key)
    for signature in signatures:
        # keyid is only a hint (it is not signed): every signature is tried against the key.
        if _verify_bytes(key, _b64(signature.get("sig"), "signature", where), message):
            return payload
    named = sorted({str(s.get("keyid")) for s in signatures})
    if expected not in named:
        raise InputError(f"{where}: signed by another key (key id {', '.join(named)}), not by the given key "
                         f"(key id {expected})", hint="verify with the public key of the key that signed the build")
    raise InputError(f"{where}: the signature does not match the envelope's payload: the statement was altered "
                     "after it was signed", hint="take the attestation exactly as the build wrote it")
