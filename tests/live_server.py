"""A real ASGI server (uvicorn) for browser and end-to-end tests, in a background thread of the test process.

It serves config.asgi.application — Django views, the /v1 consumers and the dashboard websocket — on
127.0.0.1 and a free port, against the test database. Use it from tests marked
`@pytest.mark.django_db(transaction=True)` so the server's connections see the test's committed rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from dataclasses import dataclass

import uvicorn


class _ThreadServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # signal handlers belong to the main thread (pytest's)
        yield


@dataclass
class LiveASGIServer:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start(app=None) -> LiveASGIServer:
    if app is None:
        from config.asgi import application as app
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_level="warning", ws="websockets", access_log=False,
                            timeout_graceful_shutdown=2)
    server = _ThreadServer(config)

    def serve() -> None:
        asyncio.run(server.serve(sockets=[sock]))

    thread = threading.Thread(target=serve, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    for _ in range(200):  # bounded: up to 10 s
        if server.started:
            break
        thread.join(timeout=0.05)
    else:
        raise RuntimeError("the live ASGI server did not start")
    return LiveASGIServer(url=f"http://127.0.0.1:{port}", server=server, thread=thread)
