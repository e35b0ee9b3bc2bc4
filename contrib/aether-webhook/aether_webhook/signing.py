"""Signing webhook bodies, and verifying them on the receiving side.

A delivery carries three headers (the scheme of the Standard Webhooks spec, with our
header names and a hex digest)::

    Aether-Webhook-Id: rev-42
    Aether-Webhook-Timestamp: 1767225600
    Aether-Webhook-Signature: v1=<hex HMAC-SHA256(secret, "<id>.<timestamp>." + body)>

The id and the timestamp are inside the signed bytes, so neither can be changed without
breaking the signature. A receiver recomputes the digest over the raw body, compares in
constant time, refuses a timestamp outside its tolerance (a captured request cannot be
replayed later) and remembers ids it has seen within the tolerance (it cannot be replayed
sooner either; ids also make retried deliveries idempotent). :func:`verify` does the
first three; it needs nothing but the standard library, so a receiver can copy it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

ID_HEADER = "Aether-Webhook-Id"
TIMESTAMP_HEADER = "Aether-Webhook-Timestamp"
SIGNATURE_HEADER = "Aether-Webhook-Signature"
VERSION = "v1"
#: Seconds a receiver accepts between the signing time and now, either way.
DEFAULT_TOLERANCE = 300.0


class SignatureError(ValueError):
    """The request is not a genuine, fresh delivery (the message says why)."""


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def digest(secret: str | bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<id>.<timestamp>." + body``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return hmac.new(_key(secret), signed, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers that authenticate ``body``."""
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"{VERSION}={digest(secret, message_id, timestamp, body)}",
    }


def verify(
    secret: str | bytes,
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> str:
    """Check a delivery and return its id (to deduplicate on).

    :param body: the raw request body, byte for byte, before any JSON parsing.
    :param headers: the request headers (any capitalisation).
    :raises SignatureError: a header is missing or malformed, the timestamp is outside
        ``tolerance`` seconds of ``now``, or no signature matches.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    message_id = lower.get(ID_HEADER.lower())
    stamp = lower.get(TIMESTAMP_HEADER.lower())
    signatures = lower.get(SIGNATURE_HEADER.lower())
    if not message_id or not stamp or not signatures:
        raise SignatureError("missing webhook id, timestamp or signature header")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError("timestamp header is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(
            f"timestamp is {current - timestamp:+.0f}s from now (tolerance {tolerance:.0f}s)"
        )
    expected = digest(secret, message_id, timestamp, body)
    # Several space-separated signatures are allowed, so a sender can sign with a new
    # and an old key while a secret is being rotated.
    for candidate in signatures.split():
        version, _, value = candidate.partition("=")
        if version == VERSION and hmac.compare_digest(value, expected):
            return message_id
    raise SignatureError("no signature matches")
