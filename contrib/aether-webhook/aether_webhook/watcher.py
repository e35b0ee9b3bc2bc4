"""The ``webhook`` watcher: POST each change event, signed, retried, dead-lettered.

The watch hub calls :meth:`WebhookWatcher.deliver` once per event, in revision order,
from its own task, so a slow or dead receiver never delays a commit. The hub's own
policy retries a failing ``deliver`` forever; a webhook instead wants a bounded number
of tries and then to move on, so ``deliver`` runs that policy itself and returns
normally once the event is accepted or written to the dead-letter file. It raises only
when even the dead-letter file cannot be written (then the hub retries the whole
delivery) or when the watcher has been closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec
import structlog

from aether_core.providers import NodeInfo
from aether_core.records import ChangeEvent
from aether_core.watch import Watcher
from aether_webhook import deadletter, signing
from aether_webhook.settings import WebhookSettings

if TYPE_CHECKING:
    from aether_core.node import Node

log = structlog.get_logger("aether.webhook")

_encode = msgspec.json.Encoder().encode
USER_AGENT = "aether-webhook/0.1"


class WatcherClosed(RuntimeError):
    """The watcher was closed while a delivery was under way; the event was not sent."""


def redact(url: str) -> str:
    """``url`` without query string or fragment, which may carry tokens."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class WebhookWatcher(Watcher):
    """POST every event to ``url`` as JSON, signed with HMAC-SHA256 (see :mod:`.signing`)."""

    name = "webhook"
    Settings = WebhookSettings

    def __init__(
        self,
        url: str,
        secret: str | bytes,
        *,
        dead_letter: str | Path,
        prefix: str = "",
        kinds: frozenset[str] | None = None,
        timeout: float = 10.0,
        max_attempts: int = 5,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.target = redact(url)
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self.dead_letter = Path(dead_letter)
        self.prefix = prefix
        self.kinds = kinds
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._closed = asyncio.Event()
        #: Counters for tests and metrics.
        self.delivered = 0
        self.dead_lettered = 0

    def __repr__(self) -> str:
        return f"WebhookWatcher(url={self.target!r})"

    @classmethod
    def from_settings(cls, settings: WebhookSettings, node: NodeInfo) -> WebhookWatcher:
        dead_letter = Path(settings.dead_letter).expanduser()
        if not dead_letter.is_absolute():
            dead_letter = Path(node.data_dir) / dead_letter
        return cls(
            settings.url,
            settings.secret.get_secret_value(),
            dead_letter=dead_letter,
            prefix=settings.prefix,
            kinds=frozenset(settings.kinds) if settings.kinds is not None else None,
            timeout=settings.timeout,
            max_attempts=settings.max_attempts,
            backoff=settings.backoff,
            backoff_max=settings.backoff_max,
            jitter=settings.jitter,
        )

    # -- life cycle ------------------------------------------------------------------

    async def start(self, node: Node | None = None) -> None:
        self._closed.clear()
        self._client = httpx.AsyncClient(
            timeout=self.timeout,
            follow_redirects=False,  # a redirect would re-send the signed body elsewhere
            headers={"User-Agent": USER_AGENT},
        )
        log.info("webhook watcher started", url=self.target, prefix=self.prefix,
                 dead_letter=str(self.dead_letter))

    async def close(self) -> None:
        self._closed.set()
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    # -- delivery --------------------------------------------------------------------

    async def deliver(self, event: ChangeEvent) -> None:
        if self.kinds is not None and event.kind not in self.kinds:
            return
        body = _encode(event)
        message_id = f"rev-{event.revision}"
        error = ""
        for attempt in range(1, self.max_attempts + 1):
            error, retry_after = await self._post(message_id, body)
            if not error:
                self.delivered += 1
                log.debug("webhook delivered", url=self.target, revision=event.revision,
                          attempt=attempt)
                return
            if attempt == self.max_attempts:
                break
            delay = self.retry_delay(attempt, retry_after)
            log.warning("webhook delivery failed; retrying", url=self.target,
                        revision=event.revision, attempt=attempt, error=error,
                        retry_in=round(delay, 3))
            await self._pause(delay)
        await deadletter.append(self.dead_letter, deadletter.DeadLetter(
            url=self.target, id=message_id, attempts=self.max_attempts, error=error,
            failed_at=self._clock(), event=event,
        ))
        self.dead_lettered += 1
        log.error("webhook gave up; event written to the dead-letter file", url=self.target,
                  revision=event.revision, attempts=self.max_attempts, error=error,
                  dead_letter=str(self.dead_letter))

    def retry_delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number ``attempt``: exponential, capped, with
        jitter; never shorter than a ``Retry-After`` the receiver asked for (capped)."""
        delay = min(self.backoff_max, self.backoff * 2.0 ** (attempt - 1))
        delay *= 1 - self.jitter * self._rng.random()
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay

    async def _post(self, message_id: str, body: bytes) -> tuple[str, float | None]:
        """One try: ``("", None)`` when accepted, else ``(reason, retry_after)``."""
        client = self._client
        if client is None or self._closed.is_set():
            raise WatcherClosed(f"webhook watcher for {self.target} is closed")
        # Signed afresh on each try, so a late retry is still inside the receiver's
        # timestamp tolerance.
        headers = signing.sign(self._secret, message_id, int(self._clock()), body)
        headers["Content-Type"] = "application/json"
        try:
            response = await client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            if self._closed.is_set():
                raise WatcherClosed(f"webhook watcher for {self.target} is closed") from None
            return type(exc).__name__, None
        except RuntimeError:
            # httpx raises RuntimeError when the client was closed under the request.
            if self._closed.is_set():
                raise WatcherClosed(f"webhook watcher for {self.target} is closed") from None
            raise
        if response.is_success:
            return "", None
        return f"HTTP {response.status_code}", _retry_after(response)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once (and stop) if the watcher is closed meanwhile."""
        with contextlib.suppress(TimeoutError):  # not wait_for: it can eat a cancel
            async with asyncio.timeout(seconds):
                await self._closed.wait()
        if self._closed.is_set():
            raise WatcherClosed(f"webhook watcher for {self.target} is closed")


def _retry_after(response: httpx.Response) -> float | None:
    if response.status_code not in (429, 503):
        return None
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from webhook receivers; back-off applies
