"""Mutual TLS between raft peers.

Both ends present a certificate issued by the cluster CA and verify the other's against
that CA only (never the system store): ``CERT_REQUIRED`` on both sides, TLS 1.2 at
least (1.3 when both ends have it, which OpenSSL prefers). A valid certificate is not
enough: it must also name the node it speaks for, as a DNS subjectAltName equal to the
node's ``[node] name`` (compared without case). The dialer checks that the acceptor's
certificate names the peer it meant to reach; the acceptor checks that the dialer's
certificate names the member the dialer claims to be in its hello. So a node holding a
certificate for ``node-3`` can neither pose as ``node-1`` to others nor answer for it.

Names are matched exactly, not as host names: no wildcards, no common-name fallback (a
certificate for ``*`` or with only a CN names no node).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class TLSConfigError(ValueError):
    """A certificate, key or CA file that cannot be used; the message names which."""


@dataclass(frozen=True)
class PeerTLS:
    """The two contexts a node needs: one to accept peers, one to dial them."""

    server: ssl.SSLContext
    client: ssl.SSLContext


def _context(purpose: int, cert_file: str, key_file: str, ca_file: str) -> ssl.SSLContext:
    context = ssl.SSLContext(purpose)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    # Peers are addressed by IP or host but identified by node name, which
    # :func:`names_node` compares itself; OpenSSL's host-name rules do not apply.
    context.check_hostname = False
    try:
        context.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"tls_ca_file {ca_file}: {_reason(exc)}") from None
    try:
        # A callback, so that an encrypted key fails here instead of OpenSSL prompting
        # for a pass phrase on a service's (absent) terminal.
        context.load_cert_chain(cert_file, key_file, password=_no_pass_phrase(key_file))
    except TLSConfigError:
        raise
    except (OSError, ssl.SSLError) as exc:
        # OpenSSL's message ("key values mismatch", "PEM lib") never holds key material.
        raise TLSConfigError(
            f"tls_cert_file {cert_file} with tls_key_file {key_file}: {_reason(exc)}"
        ) from None
    return context


def _no_pass_phrase(key_file: str) -> Callable[[], str]:
    def refuse() -> str:
        raise TLSConfigError(f"tls_key_file {key_file} is encrypted: give the node an "
                             "unencrypted key (readable by its user only, mode 0600)")

    return refuse


def _reason(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"not usable ({exc.reason.lower().replace('_', ' ')})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def load(cert_file: str, key_file: str, ca_file: str) -> PeerTLS:
    """Build both contexts; :class:`TLSConfigError` names the file that is wrong."""
    return PeerTLS(
        server=_context(ssl.PROTOCOL_TLS_SERVER, cert_file, key_file, ca_file),
        client=_context(ssl.PROTOCOL_TLS_CLIENT, cert_file, key_file, ca_file),
    )


def cert_names(peercert: Any) -> frozenset[str]:
    """The DNS subjectAltNames of a verified peer certificate (``getpeercert()``), lower case."""
    if not isinstance(peercert, dict):
        return frozenset()
    return frozenset(value.lower() for kind, value in peercert.get("subjectAltName", ())
                     if kind == "DNS")


def names_node(names: frozenset[str], node: str) -> bool:
    return node.lower() in names
