"""``AsyncAetherClient``: the admin API from asyncio — log-in and token refresh, reads
and writes, a watch that resumes where it left off, and live typed bindings.

Everything the SDK does goes through this class; :class:`aether_client.sync.AetherClient`
runs it on a private event loop for code that is not async.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
import structlog
from pydantic import BaseModel

from aether_client.binding import Binding
from aether_client.cache import ValueCache, default_cache_dir
from aether_client.credentials import Credentials, url_from_env
from aether_client.errors import ApiError, ClientError, Compacted, Unreachable
from aether_client.records import Change, ConfigRecord, VersionInfo, WatchEvent
from aether_client.stream import Backoff, resumable_events

log = structlog.get_logger("aether.client")

M = TypeVar("M", bound=BaseModel)
#: Refresh a token once this share of its lifetime has passed.
REFRESH_AT = 2 / 3


def _path(name: str) -> str:
    return quote(name, safe="/")


def _token_lifetime(token: str) -> float | None:
    """Seconds until a JWT's ``exp``, read without verifying (only to plan a refresh:
    the server verifies)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"]) - time.time()
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def describe(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        text = "connection refused" if "refused" in text.lower() else text
    return text


class AsyncAetherClient:
    """A client of one Aether server.

    :param url: the admin API, e.g. ``http://127.0.0.1:8080`` (default ``$AETHER_URL``).
    :param credentials: a token, or a username and password (default: the environment,
        see :meth:`Credentials.from_env`). With a password the client logs in again when
        its token expires or is revoked.
    :param client_id: how this process names itself in ack/nack reports
        (default ``host:pid``).
    :param cache_dir: where :meth:`bind` keeps the last good values (default
        :func:`default_cache_dir`); ``False`` keeps none.
    :param backoff: delays between reconnection attempts of watches and bindings.
    """

    def __init__(
        self,
        url: str | None = None,
        credentials: Credentials | None = None,
        *,
        timeout: float = 10.0,
        watch_read_timeout: float = 60.0,
        client_id: str | None = None,
        cache_dir: str | Path | Literal[False] | None = None,
        backoff: Backoff | None = None,
        report_acks: bool = False,
    ) -> None:
        self.url = url_from_env(url)
        self.credentials = credentials if credentials is not None else Credentials.from_env()
        self.client_id = client_id or f"{socket.gethostname()}:{os.getpid()}"
        self.backoff = backoff or Backoff()
        self.report_acks = report_acks
        self.watch_read_timeout = watch_read_timeout
        self.cache = None if cache_dir is False else ValueCache(
            cache_dir if cache_dir is not None else default_cache_dir(self.url))
        self._http = httpx.AsyncClient(
            base_url=self.url, timeout=timeout,
            headers={"User-Agent": "aether-client/0.1"},
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
        )
        self._token = self.credentials.token
        self._refresh_at: float | None = None
        if self._token:
            lifetime = _token_lifetime(self._token)
            if lifetime is not None:
                self._refresh_at = time.monotonic() + lifetime * (1 - REFRESH_AT)
        self._token_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._bindings: list[Binding[Any]] = []
        self._closed = asyncio.Event()

    async def __aenter__(self) -> AsyncAetherClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop every binding and watch, and close the connections."""
        self._closed.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._http.aclose()

    # -- tokens ------------------------------------------------------------------------

    def _keep(self, body: dict[str, Any]) -> None:
        self._token = str(body["access_token"])
        ttl = float(body.get("expires_in", 0)) or (_token_lifetime(self._token) or 0)
        self._refresh_at = time.monotonic() + ttl * REFRESH_AT if ttl else None

    async def login(self) -> None:
        """Log in with the username and password of :attr:`credentials`."""
        if not self.credentials.can_login:
            raise ClientError("no credentials: set AETHER_TOKEN, or AETHER_USERNAME with "
                              "AETHER_PASSWORD or AETHER_PASSWORD_FILE")
        response = await self._send("POST", "/login", json={
            "username": self.credentials.username, "password": self.credentials.password})
        if response.status_code != 200:
            raise ApiError.from_response(response)
        self._keep(response.json())

    async def refresh(self) -> None:
        """Swap the token for a fresh one (the server revokes the old one)."""
        response = await self._send("POST", "/token/refresh",
                                    headers={"Authorization": f"Bearer {self._token}"})
        if response.status_code != 200:
            raise ApiError.from_response(response)
        self._keep(response.json())

    async def _bearer(self, stale: str | None = None) -> dict[str, str]:
        async with self._token_lock:
            if stale is not None and self._token == stale:
                self._token = None  # refused: log in again
            if self._token is None:
                await self.login()
            elif self._refresh_at is not None and time.monotonic() >= self._refresh_at:
                try:
                    await self.refresh()
                except ApiError:
                    if not self.credentials.can_login:
                        raise
                    await self.login()
            return {"Authorization": f"Bearer {self._token}"}

    # -- requests ----------------------------------------------------------------------

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {self.url}: {describe(exc)}") from None

    async def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None,
        stream: bool = False, **kwargs: Any,
    ) -> httpx.Response:
        """An authenticated request; a refused token is replaced once (log-in again).
        Answers other than 2xx raise :class:`ApiError`."""
        stale: str | None = None
        for attempt in (1, 2):
            auth = await self._bearer(stale)
            request = self._http.build_request(method, path, headers={**(headers or {}),
                                                                      **auth}, **kwargs)
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                raise Unreachable(f"cannot reach {self.url}: {describe(exc)}") from None
            if response.is_success:
                return response
            if stream:
                await response.aread()
                await response.aclose()
            if response.status_code == 401 and attempt == 1 and self.credentials.can_login:
                stale = auth["Authorization"][len("Bearer "):]
                continue
            raise ApiError.from_response(response)
        raise AssertionError("unreachable")

    @staticmethod
    def _if_match(version: int | Literal["*"] | None) -> dict[str, str]:
        if version is None:
            return {}
        return {"If-Match": "*" if version == "*" else f'"{version}"'}

    async def get(self, name: str, version: int | None = None, *, reveal: bool = False
                  ) -> ConfigRecord:
        """Version ``version`` of ``name``; without one, the version this client should
        run: the candidate of a staged rollout when ``client_id`` is inside its fraction.

        :param reveal: the plaintext of ``SecretStr`` fields instead of ``**********``
            (needs ``secrets:read`` on ``name``; without ``version``: the latest version,
            not a rollout's candidate)."""
        if version is None and not reveal:
            response = await self.request("GET", "/rollouts/config", params={
                "name": name, "client": self.client_id[:128]})
            return ConfigRecord.from_json(response.json())
        params: dict[str, Any] = {} if version is None else {"version": version}
        if reveal:
            params["reveal"] = "true"
        response = await self.request("GET", f"/configs/{_path(name)}", params=params)
        return ConfigRecord.from_json(response.json())

    async def put(
        self, name: str, value: Any, *, if_match: int | Literal["*"] | None = None,
        comment: str = "",
    ) -> ConfigRecord:
        """Write the next version of ``name`` (created if absent); ``if_match`` makes it a
        compare-and-set on that version."""
        response = await self.request("PUT", f"/configs/{_path(name)}",
                                      json={"value": value, "comment": comment},
                                      headers=self._if_match(if_match))
        return ConfigRecord.from_json(response.json())

    async def delete(self, name: str, *, if_match: int | None = None) -> int:
        response = await self.request("DELETE", f"/configs/{_path(name)}",
                                      headers=self._if_match(if_match))
        return int(response.json()["version"])

    async def list_configs(
        self, prefix: str = "", *, page_size: int = 1000
    ) -> list[ConfigRecord]:
        """Every live config under ``prefix`` (all pages)."""
        return [record async for page in self.pages(prefix, page_size=page_size)
                for record in page]

    async def pages(
        self, prefix: str = "", *, page_size: int = 1000
    ) -> AsyncIterator[list[ConfigRecord]]:
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"prefix": prefix, "limit": page_size}
            if cursor:
                params["cursor"] = cursor
            body = (await self.request("GET", "/configs", params=params)).json()
            yield [ConfigRecord.from_json(item) for item in body["items"]]
            cursor = body.get("next_cursor")
            if not cursor:
                return

    async def history(self, name: str) -> list[VersionInfo]:
        response = await self.request("GET", f"/configs/{_path(name)}/versions")
        return [VersionInfo.from_json(v) for v in response.json()["versions"]]

    async def rollback(
        self, name: str, to_version: int, *, if_match: int | None = None, comment: str = ""
    ) -> ConfigRecord:
        response = await self.request("POST", f"/configs/{_path(name)}/rollback",
                                      json={"to_version": to_version, "comment": comment},
                                      headers=self._if_match(if_match))
        return ConfigRecord.from_json(response.json())

    async def diff(self, name: str, from_version: int, to_version: int) -> list[dict[str, Any]]:
        """The RFC 6902 JSON Patch from one version to another."""
        response = await self.request("GET", f"/configs/{_path(name)}/diff",
                                      params={"from": from_version, "to": to_version})
        patch: list[dict[str, Any]] = response.json()["patch"]
        return patch

    async def revision(self) -> int:
        """The server's current revision (``GET /ready``)."""
        response = await self._send("GET", "/ready")
        if response.status_code != 200:
            raise ApiError.from_response(response)
        return int(response.json()["revision"])

    async def report(
        self, name: str, version: int, status: Literal["ack", "nack"], *,
        errors: list[dict[str, str]] | None = None, detail: str = "",
    ) -> None:
        """Tell the server this client applied (ack) or refused (nack) a version."""
        await self.request("POST", "/acks", json={
            "name": name, "version": version, "client": self.client_id[:128],
            "status": status, "errors": (errors or [])[:50], "detail": detail[:1024]})

    async def reports(
        self, name: str, *, version: int | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"name": name}
        if version is not None:
            params["version"] = version
        if status is not None:
            params["status"] = status
        items: list[dict[str, Any]] = (await self.request("GET", "/acks", params=params)
                                       ).json()["items"]
        return items

    # -- watching ----------------------------------------------------------------------

    async def open_watch(self, prefix: str, since: int) -> httpx.Response:
        """One ``GET /watch`` stream from revision ``since`` (raises on refusal)."""
        timeout = httpx.Timeout(self._http.timeout.connect or 10.0,
                                read=self.watch_read_timeout)
        return await self.request(
            "GET", "/watch", params={"prefix": prefix},
            headers={"Last-Event-ID": str(since), "Accept": "text/event-stream"},
            stream=True, timeout=timeout,
        )

    def watch(self, prefix: str = "", since: int | None = None) -> AsyncIterator[WatchEvent]:
        """Every change under ``prefix`` after revision ``since`` (default: from now),
        in order, each once — across disconnects and server restarts, reconnecting with
        back-off and jitter and resuming from the last revision seen. Raises
        :class:`Compacted` when that revision is no longer kept."""
        return resumable_events(self, prefix, since)

    # -- bindings ----------------------------------------------------------------------

    async def bind(
        self, name: str, model: type[M], *, default: M | None = None,
        on_change: Callable[[Change[M]], Any] | None = None,
    ) -> Binding[M]:
        """A live, typed view of config ``name``.

        The current value is read from the server, or — when the server cannot be
        reached — from the last good value cached on disk. From then on every new
        version is validated against ``model``: a valid one replaces ``binding.value``
        (one reference swap) and runs the ``on_change`` callbacks; an invalid one is
        not applied and is reported to the server as a nack.

        A model with ``SecretStr`` fields is read revealed (``secrets:read``; a refusal
        is a nack, never the placeholder applied) and is never cached on disk.

        :param on_change: a first callback, registered before the binding starts to
            follow (so not even the first change after the initial value is missed).
        :raises ClientError: no value from the server, the cache or ``default``.
        """
        binding: Binding[M] = Binding(name, model, self)
        if on_change is not None:
            binding.on_change(on_change)
        since = await binding.load(default)
        self._bindings.append(binding)
        self.spawn(binding.follow(since), f"aether-bind-{name}")
        return binding

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A background task that :meth:`close` cancels."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def snapshot(self, name: str, *, reveal: bool = False) -> ConfigRecord | None:
        """The latest version, or None when the config does not exist."""
        try:
            return await self.get(name, reveal=reveal)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._closed.wait(), timeout)
        except TimeoutError:
            return False
        return True


__all__ = ["AsyncAetherClient", "Compacted"]
