"""Aether ``webhook`` watcher: each change event POSTed as JSON, HMAC-SHA256 signed,
retried with back-off and jitter, and written to a dead-letter file when it cannot be
delivered. Receivers verify deliveries with :func:`aether_webhook.signing.verify`."""

from aether_webhook.signing import SignatureError, sign, verify

__all__ = ["SignatureError", "sign", "verify"]
