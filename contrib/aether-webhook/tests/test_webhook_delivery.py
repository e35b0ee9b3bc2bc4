"""Webhook delivery against a real HTTP receiver: retries, signatures, dead letters,
and commits that never wait for the receiver."""

from __future__ import annotations

import asyncio
import itertools
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import structlog
from aether_webhook import deadletter
from aether_webhook.signing import SIGNATURE_HEADER, SignatureError, verify
from aether_webhook.watcher import WebhookWatcher
from webhook_receiver import Receiver, wait_until

from aether_core import ChangeEvent, ConfigManager, MemoryStorage

SECRET = "s3cr3t-hmac-key-0123456789abcdef"


@pytest.fixture
async def manager() -> AsyncIterator[ConfigManager]:
    async with ConfigManager(MemoryStorage()) as m:
        yield m


async def watch(manager: ConfigManager, url: str, tmp_path: Path, **options: object
                ) -> WebhookWatcher:
    watcher = WebhookWatcher(url, SECRET, dead_letter=tmp_path / "dead.jsonl", **options)
    await watcher.start()
    manager.hub.add_watcher(watcher)
    return watcher


async def test_a_receiver_that_fails_three_times_gets_the_event_on_the_fourth_try(
    manager: ConfigManager, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.fail_first = 3
    watcher = await watch(manager, receiver.url, tmp_path, backoff=0.05, jitter=0.0)
    try:
        record = await manager.put("billing/database", {"host": "db", "port": 5432})
        await wait_until(lambda: watcher.delivered == 1)
    finally:
        await watcher.close()
    tries = receiver.requests
    assert [r.status for r in tries] == [500, 500, 500, 200]
    event = msgspec.json.decode(tries[-1].body, type=ChangeEvent)
    assert (event.revision, event.name, event.version, event.value) == (
        record.revision, "billing/database", 1, {"host": "db", "port": 5432})
    # Every try carries the same body and id, each signed and verifiable on its own.
    assert {r.body for r in tries} == {tries[0].body}
    assert {verify(SECRET, r.body, r.headers) for r in tries} == {f"rev-{record.revision}"}
    assert tries[0].headers["Content-Type"] == "application/json"
    # Exponential back-off: 0.05 s, 0.1 s, 0.2 s between the tries.
    gaps = [b.at - a.at for a, b in itertools.pairwise(tries)]
    for gap, nominal in zip(gaps, [0.05, 0.1, 0.2], strict=True):
        assert nominal * 0.9 <= gap < nominal + 0.5, gaps
    assert watcher.delivered == 1 and watcher.dead_lettered == 0
    assert not (tmp_path / "dead.jsonl").exists()


async def test_the_signature_rejects_a_changed_body_a_wrong_key_and_a_replay(
    manager: ConfigManager, receiver: Receiver, tmp_path: Path
) -> None:
    watcher = await watch(manager, receiver.url, tmp_path)
    try:
        await manager.put("app/flag", True)
        await wait_until(lambda: watcher.delivered == 1)
    finally:
        await watcher.close()
    request = receiver.requests[0]
    body, headers = request.body, request.headers
    stamp = int(headers["Aether-Webhook-Timestamp"])
    assert abs(stamp - time.time()) < 5
    assert verify(SECRET, body, headers, now=stamp + 299) == "rev-1"
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(SECRET, body.replace(b"true", b"false"), headers)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify("another-key-of-enough-length", body, headers)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(SECRET, body, {**headers, "Aether-Webhook-Id": "rev-2"})
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, body, headers, now=stamp + 301)  # replayed six minutes later
    with pytest.raises(SignatureError, match="missing"):
        verify(SECRET, body, {k: v for k, v in headers.items() if k != SIGNATURE_HEADER})


async def test_a_receiver_down_for_good_ends_in_the_dead_letter_file_and_the_watcher_moves_on(
    manager: ConfigManager, dead_port: int, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{dead_port}/hook?token=tok-in-query"
    with structlog.testing.capture_logs() as logs:
        watcher = await watch(manager, url, tmp_path, max_attempts=3, backoff=0.01)
        try:
            first = await manager.put("billing/a", {"n": 1})
            second = await manager.put("billing/b", {"n": 2})
            await wait_until(lambda: watcher.dead_lettered == 2)
        finally:
            await watcher.close()
    letters = deadletter.read(tmp_path / "dead.jsonl")
    assert [(d.event.revision, d.event.value) for d in letters] == [
        (first.revision, {"n": 1}), (second.revision, {"n": 2})]
    assert {(d.attempts, d.error, d.url) for d in letters} == {
        (3, "ConnectError", f"http://127.0.0.1:{dead_port}/hook")}
    assert stat.S_IMODE(os.stat(tmp_path / "dead.jsonl").st_mode) == 0o600
    retries = [e for e in logs if e["event"] == "webhook delivery failed; retrying"]
    assert len(retries) == 4  # two events, each 3 tries - 1
    everything = repr(logs) + (tmp_path / "dead.jsonl").read_text() + repr(watcher)
    assert SECRET not in everything and "tok-in-query" not in everything


async def test_commits_never_wait_for_a_receiver_that_hangs(
    manager: ConfigManager, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.hang = True
    watcher = await watch(manager, receiver.url, tmp_path, timeout=15)
    try:
        await manager.put("app/k", 0)
        await asyncio.to_thread(receiver.hanging.wait, 5)
        assert receiver.hanging.is_set()
        latencies = []
        for i in range(1, 301):
            started = time.perf_counter()
            await manager.put(f"app/k{i % 10}", {"i": i})
            latencies.append(time.perf_counter() - started)
        # Still stuck in the first request while all 300 writes were acknowledged.
        assert len(receiver.requests) == 1 and not receiver.release.is_set()
        latencies.sort()
        assert latencies[-1] < 0.25 and latencies[int(len(latencies) * 0.99)] < 0.05, (
            latencies[-5:])
        receiver.release.set()
        await wait_until(lambda: watcher.delivered == 301, timeout=20)
    finally:
        await watcher.close()
    ids = [r.headers["Aether-Webhook-Id"] for r in receiver.accepted()]
    assert ids == [f"rev-{n}" for n in range(1, 302)]  # in order, each once


async def test_closing_the_watcher_stops_a_delivery_in_back_off_without_a_dead_letter(
    manager: ConfigManager, dead_port: int, tmp_path: Path
) -> None:
    with structlog.testing.capture_logs() as logs:
        watcher = await watch(manager, f"http://127.0.0.1:{dead_port}/", tmp_path,
                              backoff=30, backoff_max=60)
        await manager.put("a", 1)
        await wait_until(lambda: any("retrying" in e["event"] for e in logs))
        started = time.perf_counter()
        await watcher.close()
        await asyncio.sleep(0.05)
    assert time.perf_counter() - started < 1
    assert watcher.dead_lettered == 0 and not (tmp_path / "dead.jsonl").exists()


def test_retry_delays_grow_exponentially_with_jitter_below_the_cap() -> None:
    import random

    watcher = WebhookWatcher("http://127.0.0.1:1/", SECRET, dead_letter="x",
                             backoff=1, backoff_max=8, jitter=0.5, rng=random.Random(7))
    delays = [watcher.retry_delay(n) for n in range(1, 7)]
    for delay, nominal in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert nominal * 0.5 <= delay <= nominal
    assert len(set(delays[3:])) == 3  # jitter: capped delays still differ
    assert watcher.retry_delay(1, retry_after=5) == 5  # a receiver's Retry-After wins
    assert watcher.retry_delay(1, retry_after=600) == 8  # but not past the cap
