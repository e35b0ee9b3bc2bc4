"""Where the SDK and the CLI find the server and who to be: arguments, else the
environment. A password is read from ``AETHER_PASSWORD`` or a file, never taken from a
command line."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from aether_client.errors import ClientError

DEFAULT_URL = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class Credentials:
    """A bearer token, or a username and password to log in with (and again when a
    token expires or is refused)."""

    token: str | None = None
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never print a secret
        return (f"Credentials(token={'***' if self.token else None}, "
                f"username={self.username!r}, password={'***' if self.password else None})")

    @property
    def can_login(self) -> bool:
        return bool(self.username and self.password)

    @classmethod
    def from_env(
        cls, *, token: str | None = None, username: str | None = None,
        password_file: str | Path | None = None,
    ) -> Credentials:
        """``AETHER_TOKEN``; else ``AETHER_USERNAME`` with ``AETHER_PASSWORD`` or the
        first line of ``AETHER_PASSWORD_FILE``. Explicit arguments win."""
        token = token or os.environ.get("AETHER_TOKEN") or None
        username = username or os.environ.get("AETHER_USERNAME") or None
        password = None
        path = password_file or os.environ.get("AETHER_PASSWORD_FILE")
        if path:
            try:
                password = Path(path).read_text(encoding="utf-8").splitlines()[0].strip()
            except (OSError, IndexError) as exc:
                raise ClientError(f"cannot read the password file {path}: "
                                  f"{getattr(exc, 'strerror', None) or 'empty'}") from None
        password = password or os.environ.get("AETHER_PASSWORD") or None
        return cls(token=token, username=username, password=password)


def url_from_env(url: str | None = None) -> str:
    return (url or os.environ.get("AETHER_URL") or DEFAULT_URL).rstrip("/")
