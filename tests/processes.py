"""Real server processes for the tests that need them (graceful shutdown, crashes, several processes): uvicorn
serving config.asgi:application on a free loopback port against the test database, ended by PID."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
from django.conf import settings
from django.db import connection

from tests.live_server import closed_port

ROOT = Path(__file__).resolve().parent.parent


def server_env(**extra: str) -> dict[str, str]:
    """Production-like settings for a server process that shares this test run's database (and secrets, so the
    keys the test mints authenticate there)."""
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        TOLLGATE_TESTING="0",
        DEBUG="0",
        SECRET_KEY=settings.SECRET_KEY,
        API_KEY_HASH_SECRET=settings.API_KEY_HASH_SECRET,
        FIELD_ENCRYPTION_KEY=settings.FIELD_ENCRYPTION_KEY,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def stop(process: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM a process this test started, then SIGKILL it if it has not exited within `timeout`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    # What the process wrote to stderr (its last lines), read by a thread so a chatty server never blocks on a
    # full pipe.
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=400))
    reader: threading.Thread | None = None

    def output(self) -> str:
        if self.reader is not None and self.process.poll() is not None:
            self.reader.join(timeout=5)
        return "".join(self.lines)

    @property
    def pid(self) -> int:
        return self.process.pid

    def terminate(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def children(self) -> list[int]:
        """The PIDs of this server's worker processes (with --workers > 1), from /proc."""
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/children") as f:
                return [int(pid) for pid in f.read().split()]
        except OSError:
            return []

    def stop(self, timeout: float = 20) -> None:
        """Graceful stop, then SIGKILL by PID for the server and any worker left (the cleanup of a test)."""
        workers = self.children()
        if self.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.terminate(timeout)
        self.kill()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def start_server(*, workers: int = 1, grace_seconds: int | None = None, **env: str) -> Server:
    """`python -m config.serve` (what deploy/ runs) on a free port."""
    port = closed_port()
    args = [sys.executable, "-m", "config.serve", "--port", str(port), "--workers", str(workers)]
    if grace_seconds is not None:
        env["SHUTDOWN_GRACE_SECONDS"] = str(grace_seconds)
    process = subprocess.Popen(
        args, cwd=ROOT, env=server_env(**env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    server = Server(process, f"http://127.0.0.1:{port}")
    server.reader = threading.Thread(target=lambda: server.lines.extend(process.stderr), daemon=True)
    server.reader.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # bounded: the server answers /healthz, or the test fails
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {server.output()[-2000:]}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.kill()
    raise RuntimeError("server did not start within 30 s")


async def open_streams(url: str, key: str, body: dict, count: int, opened) -> list[bytes]:
    """`count` concurrent streamed chat completions with `key`; `opened` (a threading or asyncio Event) is set
    once each has delivered its first bytes. A stream the server cuts (killed, or stopping) returns what it had
    received by then."""
    started = 0

    async def one(session: aiohttp.ClientSession) -> bytes:
        nonlocal started
        received = b""
        try:
            async with session.post(
                f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
            ) as response:
                assert response.status == 200, await response.text()
                async for piece in response.content.iter_any():
                    if not received:
                        started += 1
                        if started == count:
                            opened.set()
                    received += piece
        except aiohttp.ClientError:
            pass  # the server went away mid-stream
        return received

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        return await asyncio.gather(*(one(session) for _ in range(count)))
