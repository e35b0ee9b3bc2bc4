"""A watch that survives disconnects: ``GET /watch`` resumed with ``Last-Event-ID``.

Every event carries its revision; the stream remembers the last one it yielded and
reconnects from there, so a consumer sees each change once and in order across dropped
connections and server restarts. Reconnection attempts are spaced by tenacity's
exponential back-off with full jitter (a random wait between 0 and a doubling cap): when
a server restarts under a thousand watchers, they come back spread out, not at once.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import structlog
from httpx_sse import EventSource, SSEError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    stop_never,
    wait_random_exponential,
)

from aether_client.errors import ApiError, Compacted, Unreachable
from aether_client.records import WatchEvent

if TYPE_CHECKING:
    from aether_client.client import AsyncAetherClient

log = structlog.get_logger("aether.client")
T = TypeVar("T")
EVENT_TYPES = frozenset({"put", "delete"})


def transient(exc: BaseException) -> bool:
    """Worth trying again: no answer, a server error, or "too busy"."""
    if isinstance(exc, Unreachable):
        return True
    return (isinstance(exc, ApiError) and not isinstance(exc, Compacted)
            and (exc.status >= 500 or exc.status in (408, 429)))


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.info("server unavailable; retrying", attempt=state.attempt_number,
             wait=round(state.upcoming_sleep, 3), error=getattr(exc, "detail", repr(exc)))


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts: random in [0, min(maximum, initial·2ⁿ)].

    :param give_up_after: seconds of failed attempts before the last error is raised
        (None: keep trying, which is what a long-running service wants).
    """

    initial: float = 0.1
    maximum: float = 5.0
    give_up_after: float | None = None

    def retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            wait=wait_random_exponential(multiplier=self.initial, max=self.maximum),
            retry=retry_if_exception(transient),
            stop=stop_never if self.give_up_after is None
            else stop_after_delay(self.give_up_after),
            before_sleep=_log_retry,
            reraise=True,
        )

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``fn()``, tried again after transient failures."""
        async for attempt in self.retrying():
            with attempt:
                return await fn()
        raise AssertionError("unreachable")  # reraise=True: the last error escapes


async def resumable_events(
    client: AsyncAetherClient, prefix: str, since: int | None
) -> AsyncIterator[WatchEvent]:
    cursor = since if since is not None else await client.backoff.call(client.revision)
    while True:
        response = await client.backoff.call(partial(client.open_watch, prefix, cursor))
        opened, delivered = time.monotonic(), 0
        try:
            async for sse in EventSource(response).aiter_sse():
                if sse.event == "error":  # the server cut this stream (fell behind)
                    log.info("watch stream ended by the server; resuming", prefix=prefix,
                             revision=cursor, reason=_reason(sse.data))
                    break
                if sse.event not in EVENT_TYPES:
                    continue  # keep-alives, retry hints
                event = WatchEvent.from_json(sse.json())
                if event.revision <= cursor:
                    continue
                cursor = event.revision
                delivered += 1
                yield event
        except (httpx.TransportError, SSEError) as exc:
            log.info("watch stream lost; resuming", prefix=prefix, revision=cursor,
                     error=type(exc).__name__)
        finally:
            await response.aclose()
        if delivered == 0 and time.monotonic() - opened < 1.0:
            # A stream that ends at once, again and again, must not become a busy loop.
            await asyncio.sleep(random.uniform(0, client.backoff.maximum / 5))


def _reason(data: str) -> Any:
    try:
        return json.loads(data).get("detail", "")
    except (ValueError, AttributeError):
        return ""
