"""A service process for the end-to-end tests: binds a config to a model stricter than
the server's schema (ports below 1024 are refused) and prints one JSON line per event.

    python client_probe.py NAME     (server and credentials from the environment)
"""

from __future__ import annotations

import json
import signal
import sys
import threading

import structlog
from aether_client import AetherClient, Backoff, Binding, Change
from pydantic import BaseModel, Field


class DatabaseSettings(BaseModel):
    host: str
    port: int = Field(ge=1024, le=65535)


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    name = sys.argv[1]
    # stdout carries the JSON lines; the SDK's log goes to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with AetherClient(backoff=Backoff(initial=0.05, maximum=0.5), client_id="probe-1") as client:
        bound: list[Binding[DatabaseSettings]] = []

        def changed(change: Change[DatabaseSettings]) -> None:
            assert isinstance(change.value, DatabaseSettings)
            running = bound[0].value.model_dump() if bound else None
            say(event="change", version=change.version, revision=change.revision,
                value=change.value.model_dump(), running=running)

        bound.append(client.bind(name, DatabaseSettings, on_change=changed))
        binding = bound[0]
        say(event="ready", version=binding.version, source=binding.source,
            value=binding.value.model_dump())
        stop.wait()


if __name__ == "__main__":
    main()
