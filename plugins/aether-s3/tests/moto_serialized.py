"""A moto S3 server for the tests, on 127.0.0.1 and a free port, that handles one
request at a time.

moto checks ``If-None-Match`` and then stores the object in two steps without a lock,
so two concurrent conditional PUTs of one key can both succeed — unlike AWS S3, where
the conditional create is atomic. Serialising requests restores S3's guarantee, which
is the one the storage relies on. Prints ``port <n>`` once it listens.

Run: ``python moto_serialized.py``
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server


class Serialized:
    """WSGI middleware: one request inside the app at a time."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> list[bytes]:
        with self.lock:
            return list(self.app(environ, start_response))


def main() -> None:
    app = Serialized(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    print(f"port {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
