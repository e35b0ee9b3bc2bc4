"""Login throttling: a sliding window of failures per key (a username, an address)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class Throttle:
    """After ``limit`` failures of one key within ``window`` seconds, the key is blocked
    until the oldest of them leaves the window."""

    def __init__(
        self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may try again, or ``None`` if it may now."""
        now = self.clock()
        failures = self._recent(key, now)
        if failures is None or len(failures) < self.limit:
            return None
        return max(failures[0] + self.window - now, 0.001)

    def fail(self, key: str) -> None:
        now = self.clock()
        if len(self._failures) >= self.max_keys:
            # Forget keys whose failures all left the window, so memory stays bounded.
            for stale in [k for k, v in self._failures.items() if v[-1] <= now - self.window]:
                del self._failures[stale]
        failures = self._failures.setdefault(key, deque())
        failures.append(now)
        while len(failures) > self.limit:
            failures.popleft()

    def reset(self, key: str) -> None:
        self._failures.pop(key, None)
