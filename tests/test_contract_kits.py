"""The watcher and key-provider contract kits, run against the in-tree providers: the
built-in ``local`` key provider (key file, and keys from the environment) and the
``webhook`` and ``file`` watchers of contrib/."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aether_filesink.watcher import FileSinkWatcher
from aether_webhook.watcher import WebhookWatcher

from aether_core.secrets.local_keys import LocalKeyProvider
from aether_core.services import KeyProvider
from aether_core.testing import KeyProviderContract, WatcherContract
from aether_core.testing.watcher_contract import NAME, PREFIX
from aether_core.watch import Watcher

# -- key providers --------------------------------------------------------------------


class TestLocalKeyFileProvider(KeyProviderContract):
    @pytest.fixture
    async def key_provider(self, tmp_path: Path) -> AsyncIterator[KeyProvider]:
        provider = LocalKeyProvider(tmp_path / "secrets.keys")
        await provider.start()
        yield provider
        await provider.close()


class TestLocalEnvironmentKeyProvider(KeyProviderContract):
    rotates = False

    @pytest.fixture
    async def key_provider(self) -> AsyncIterator[KeyProvider]:
        provider = LocalKeyProvider(keys={"2024": bytes(range(1, 33)), "2025": b"k" * 32},
                                    current="2025")
        await provider.start()
        yield provider
        await provider.close()


async def test_the_kit_fails_a_provider_that_leaks_or_garbles(tmp_path: Path) -> None:
    """The kit is not vacuous: providers that break the contract fail it."""

    class Leaky(LocalKeyProvider):
        async def wrap(self, data_key: bytes) -> tuple[str, bytes]:
            version, wrapped = await super().wrap(data_key)
            return version, wrapped + data_key

    class Garbling(LocalKeyProvider):
        async def unwrap(self, key_version: str, wrapped_key: bytes) -> bytes:
            try:
                return await super().unwrap(key_version, wrapped_key)
            except Exception:
                return bytes(32)

    kit = KeyProviderContract()
    with pytest.raises(AssertionError):
        await kit.test_a_wrapped_key_unwraps_to_the_same_bytes_and_hides_them(
            Leaky(tmp_path / "leaky.keys"))
    with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
        await kit.test_a_tampered_wrap_or_unknown_version_raises_never_returns_bytes(
            Garbling(tmp_path / "garbling.keys"))


# -- watchers -------------------------------------------------------------------------


class _Sink(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]
    lock: threading.Lock

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.lock:
            self.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP receiver on loopback; yields its URL and the bodies it accepted."""
    received: list[dict[str, Any]] = []
    handler = type("Sink", (_Sink,), {"received": received, "lock": threading.Lock()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


class TestWebhookWatcher(WatcherContract):
    @pytest.fixture
    def watcher_class(self) -> type[Watcher]:
        return WebhookWatcher

    @pytest.fixture
    def watcher_settings(
        self, receiver: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
    ) -> dict[str, Any]:
        monkeypatch.setenv("CONTRACT_HOOK_SECRET", "s" * 32)
        self.received = receiver[1]
        return {"url": receiver[0], "secret": "${env:CONTRACT_HOOK_SECRET}", "prefix": PREFIX,
                "kinds": ["config"], "backoff": 0.05}

    async def observe(self, watcher_settings: dict[str, Any]) -> list[tuple[str, Any]]:
        return [(body["name"], body["value"]) for body in list(self.received)
                if body["revision"] < 10**6]


class TestFileSinkWatcher(WatcherContract):
    keeps_every_change = False

    @pytest.fixture
    def watcher_class(self) -> type[Watcher]:
        return FileSinkWatcher

    @pytest.fixture
    def watcher_settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"target": str(tmp_path / "rendered.json"), "config": NAME}

    async def observe(self, watcher_settings: dict[str, Any]) -> list[tuple[str, Any]]:
        try:
            with open(watcher_settings["target"], encoding="utf-8") as file:  # noqa: ASYNC230 - a tiny local file
                return [(NAME, json.load(file))]
        except FileNotFoundError:
            return []
