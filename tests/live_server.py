"""The one live server of the suite: uvicorn serving config.asgi:application (Django views, the /v1
consumers, the dashboard websocket) in a background thread of the test process, on a free 127.0.0.1 port,
against the test database. The browser and end-to-end suites share it through the fixtures below.

Tests that talk to it use `live` (which brings django_db(transaction=True)): the rows a test commits are
what the server's threads see. On SQLite pytest-django's in-memory test database is a shared-cache
database, so every thread sees the same one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx  # noqa: F401  (see below)
import pytest
import uvicorn

# The openai SDK looks for a loaded `httpx` in sys.modules on every error it maps; if a server thread is
# importing httpx at that moment (the stripe library does so lazily), the SDK sees a half-initialised
# module. Importing it before any server thread starts removes the race.


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


def loopback_socket() -> socket.socket:
    """A TCP socket bound to 127.0.0.1 on a free port, to hand to a server: no window in which another
    process could take the port between choosing and binding it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def closed_port() -> int:
    """A loopback port nobody listens on (connections to it are refused)."""
    with loopback_socket() as sock:
        return sock.getsockname()[1]


def start(app=None) -> LiveASGIServer:
    if app is None:
        from config.asgi import application as app
    sock = loopback_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", log_level="warning", ws="websockets", access_log=False, timeout_graceful_shutdown=2
    )
    server = _ThreadServer(config)

    async def serve_then_close_pool() -> None:
        from billing.backends import postgres

        try:
            await server.serve(sockets=[sock])
        finally:
            await postgres.close_pool()

    def serve() -> None:
        asyncio.run(serve_then_close_pool())

    thread = threading.Thread(target=serve, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    for _ in range(200):  # bounded: up to 10 s
        if server.started:
            break
        if not thread.is_alive():
            break
        thread.join(timeout=0.05)
    if not server.started:
        raise RuntimeError("the live ASGI server did not start")
    return LiveASGIServer(url=f"http://127.0.0.1:{port}", server=server, thread=thread)


def drop_other_connections() -> None:
    """The server's pool threads keep persistent connections; PostgreSQL cannot drop the test database
    while they are open."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture(scope="session")
def asgi_live_server(django_db_setup, django_db_blocker) -> Iterator[LiveASGIServer]:
    """One server for the whole session (started on first use)."""
    server = start()
    yield server
    server.stop()


@pytest.fixture
def live(asgi_live_server, transactional_db, settings) -> LiveASGIServer:
    """The live server, for a test whose committed rows it must see; links it builds point at it."""
    settings.PUBLIC_BASE_URL = asgi_live_server.url
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
    settings.DB_ASYNC_POOL_SIZE = 4  # as in production: holds and settlements on the server loop's own pool
    settings.DB_THREAD_SENSITIVE = False  # and other database units on worker threads
    # pytest-django's SQLite test database is in memory with a shared cache, where a write that meets
    # another answers "table is locked" at once instead of waiting (a file database, as `make run` uses,
    # waits): there, a settlement written after the reply could collide with the client's next request.
    from django.db import connection

    settings.GATEWAY_SETTLE_AFTER_REPLY = connection.vendor == "postgresql"
    return asgi_live_server
