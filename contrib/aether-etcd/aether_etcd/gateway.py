"""A small client for etcd's v3 HTTP/JSON gateway (``/v3/kv/range``, ``/v3/kv/txn``).

The gateway speaks the gRPC messages as JSON: keys and values are base64, 64-bit
integers are strings, and fields at their zero value are left out. Every failure
(connection, timeout, an error answer) becomes a
:class:`~aether_core.errors.StorageFault` that names the endpoint, never a value.
Endpoints are tried in order; one that fails to connect is skipped until the others
fail too.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import httpx
from aether_core.errors import StorageFault


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key after every key that starts with ``prefix`` (etcd's range_end)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # every key


@dataclass(frozen=True)
class KeyValue:
    key: bytes
    value: bytes
    mod_revision: int


def range_op(key: bytes, end: bytes | None = None, *, limit: int = 0) -> dict[str, Any]:
    """A ``RangeRequest`` (sorted by key, as etcd returns ranges)."""
    op: dict[str, Any] = {"key": b64(key)}
    if end is not None:
        op["range_end"] = b64(end)
    if limit:
        op["limit"] = limit
    return {"request_range": op}


def put_op(key: bytes, value: bytes) -> dict[str, Any]:
    return {"request_put": {"key": b64(key), "value": b64(value)}}


def delete_op(key: bytes, end: bytes | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"key": b64(key)}
    if end is not None:
        op["range_end"] = b64(end)
    return {"request_delete_range": op}


def unchanged(key: bytes, mod_revision: int) -> dict[str, Any]:
    """A compare that holds while ``key`` was not written since ``mod_revision``
    (0: the key does not exist)."""
    return {"key": b64(key), "target": "MOD", "result": "EQUAL",
            "mod_revision": str(mod_revision)}


def kvs(response: dict[str, Any]) -> list[KeyValue]:
    """The key-values of one ``response_range`` (or a whole RangeResponse)."""
    found = response.get("response_range", response).get("kvs", [])
    return [KeyValue(base64.b64decode(kv["key"]), base64.b64decode(kv.get("value", "")),
                     int(kv.get("mod_revision", 0))) for kv in found]


class Gateway:
    """POSTs JSON to one of ``endpoints``; one shared connection pool."""

    def __init__(self, endpoints: list[str], *, timeout: float) -> None:
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self._client = httpx.AsyncClient(timeout=timeout)
        self._preferred = 0

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        last = ""
        count = len(self.endpoints)
        for step in range(count):
            index = (self._preferred + step) % count
            endpoint = self.endpoints[index]
            try:
                answer = await self._client.post(endpoint + path, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last = f"{endpoint}: cannot connect ({type(exc).__name__})"
                continue
            except httpx.HTTPError as exc:
                raise StorageFault(f"etcd {endpoint}{path}: {type(exc).__name__}") from None
            if answer.status_code != 200:
                raise StorageFault(f"etcd {endpoint}{path}: HTTP {answer.status_code}: "
                                   f"{_error_message(answer)}")
            self._preferred = index
            result: dict[str, Any] = answer.json()
            return result
        raise StorageFault(f"etcd is unreachable ({last})")

    async def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
                  failure: list[dict[str, Any]] | None = None) -> tuple[bool, list[Any]]:
        """Run a transaction; ``(succeeded, responses)``."""
        body: dict[str, Any] = {"compare": compare, "success": success}
        if failure:
            body["failure"] = failure
        answer = await self.call("/v3/kv/txn", body)
        return bool(answer.get("succeeded", False)), list(answer.get("responses", []))

    async def read(self, ops: list[dict[str, Any]]) -> list[Any]:
        """Several ranges read at one etcd revision (an unconditional transaction)."""
        _, responses = await self.txn([], ops)
        return responses

    async def close(self) -> None:
        await self._client.aclose()


def _error_message(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:200]
    message = body.get("message") or body.get("error") if isinstance(body, dict) else None
    return str(message)[:200] if message else answer.text[:200]
