"""A real HTTP receiver for webhook tests: http.server on 127.0.0.1 (a free port), in a background thread, so
deliveries made in the test's own thread reach it over the loopback like any customer's server.

    receiver.url                  http://127.0.0.1:<port>/hook (any path is accepted)
    receiver.answer(500, 200)     the next answers, in order (then 200); an int or an Answer
    receiver.requests             every request received: Received(path, headers, body, at)
    receiver.wait_for(n, timeout) → bool, for deliveries made from another thread (the live server)

`with running() as receiver:` starts and stops one (tests use the `receiver` fixture of tests/webhooks/conftest.py).
An Answer can `hang` (never answer until the test ends, bounded at 30 s), `trickle` (send its header one byte at a
time), redirect (`location`), or send a body.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG_LIMIT = 30.0  # a hanging answer gives up by itself after this long, so no thread outlives the suite


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b"ok"
    hang: bool = False
    trickle: float = 0.0  # seconds between single bytes of the header block: alive, but never done in time
    trickle_for: float = HANG_LIMIT  # then go silent (hang) until the test ends
    location: str | None = None


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._answers: deque[Answer] = deque()
        self._lock = threading.Condition()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def answer(self, *answers: int | Answer) -> None:
        with self._lock:
            self._answers.extend(a if isinstance(a, Answer) else Answer(status=a) for a in answers)

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: len(self.requests) >= count, timeout=timeout)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._answers.clear()

    def _next(self, received: Received) -> Answer:
        with self._lock:
            self.requests.append(received)
            self._lock.notify_all()
            return self._answers.popleft() if self._answers else Answer()

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                answer = receiver._next(Received(self.path, dict(self.headers.items()), body))
                if answer.hang:
                    receiver._release.wait(HANG_LIMIT)
                    self.close_connection = True
                    return
                if answer.trickle:
                    self.close_connection = True
                    started = time.monotonic()
                    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"z" * 10_000:
                        if receiver._release.wait(answer.trickle) or time.monotonic() - started > HANG_LIMIT:
                            return
                        if time.monotonic() - started > answer.trickle_for:
                            receiver._release.wait(HANG_LIMIT)
                            return
                        try:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                        except OSError:  # the client gave up
                            return
                    return
                self.send_response(answer.status)
                if answer.location:
                    self.send_header("Location", answer.location)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST  # a followed redirect would show up as a GET

            def log_message(self, format, *args) -> None:  # quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


@contextlib.contextmanager
def running() -> Iterator[Receiver]:
    server = Receiver().start()
    try:
        yield server
    finally:
        server.stop()
