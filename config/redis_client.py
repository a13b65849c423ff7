"""The hot path's Redis client: one connection per event loop, with every command pipelined on it.

A request asks Redis one thing (the rate limiter's script, gateway/ratelimit.py); a settlement may ask whether
a dashboard page is listening (dashboard/live.py). redis-py's asyncio client spends more CPU on each of those
than Redis does: a connection checked out of a pool under a lock, a timeout context, its own reader. Here a
command is one write, and its reply resolves the oldest waiting future (Redis answers in order), so concurrent
requests share the connection without a pool or a lock.

Failures are redis-py's exceptions, so callers handle one family: `ConnectionError` when Redis cannot be
reached or the connection drops (every waiting command fails with it, and the next command reconnects),
`TimeoutError` when no reply comes within `TIMEOUT_SECONDS` (the connection is then dropped: a Redis that
stopped answering is treated as gone), `ResponseError` for an error reply.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import weakref
from typing import Any
from urllib.parse import urlsplit

import hiredis
from django.conf import settings
from redis import exceptions as rx
from redis.connection import parse_url

CONNECT_TIMEOUT_SECONDS = 0.5
TIMEOUT_SECONDS = 2.0


def _pack(args: tuple[Any, ...]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=rx.ResponseError)
        self.waiting: collections.deque[asyncio.Future] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                future = self.waiting.popleft()
                if not future.done():  # its caller may have given up (cancelled)
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError):  # garbage, or a reply nobody asked for
            self.fail(rx.ConnectionError("Redis sent a reply that could not be read"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail_waiting(rx.ConnectionError(f"the connection to Redis was lost: {exc or 'closed'}"))

    def fail(self, exc: Exception) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self._fail_waiting(exc)

    def _fail_waiting(self, exc: Exception) -> None:
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(exc)

    def send(self, *args: Any) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        self.transport.write(_pack(args))  # type: ignore[union-attr]
        return future


def _expire(protocol: _Protocol, future: asyncio.Future) -> None:
    if not future.done():  # a Redis that stopped answering is treated as gone: every waiting command fails
        protocol.fail(rx.TimeoutError(f"Redis did not answer within {TIMEOUT_SECONDS} s"))


class Client:
    """Commands on one pipelined connection, (re)opened on first use."""

    def __init__(self, url: str) -> None:
        self.options = parse_url(url)
        self.tls = urlsplit(url).scheme == "rediss"  # TLS with the system's trust store and hostname checking
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None

    async def _open(self) -> _Protocol:
        opts = self.options
        loop = asyncio.get_running_loop()
        try:
            if opts.get("path"):
                connect = loop.create_unix_connection(_Protocol, opts["path"])
            else:
                connect = loop.create_connection(
                    _Protocol, opts.get("host", "localhost"), opts.get("port", 6379), ssl=self.tls or None
                )
            _transport, protocol = await asyncio.wait_for(connect, CONNECT_TIMEOUT_SECONDS)
        except (TimeoutError, OSError) as exc:
            raise rx.ConnectionError(f"could not connect to Redis: {exc or type(exc).__name__}") from None
        setup = []
        if opts.get("password"):
            credentials = (opts["username"], opts["password"]) if opts.get("username") else (opts["password"],)
            setup.append(protocol.send("AUTH", *credentials))
        if opts.get("db"):
            setup.append(protocol.send("SELECT", opts["db"]))
        try:
            for reply in setup:
                await self._reply(protocol, reply)
        except BaseException:  # refused credentials, a database that does not exist: this connection is no use
            protocol.fail(rx.ConnectionError("Redis refused the connection's setup"))
            raise
        return protocol

    async def _connection(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and not protocol.closed:
            return protocol
        if self._connecting is None:  # the first command after a loss connects; the others wait for it
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            protocol = await asyncio.shield(connecting)
        finally:
            if self._connecting is connecting and connecting.done():
                self._connecting = None
        self._protocol = protocol
        return protocol

    @staticmethod
    async def _reply(protocol: _Protocol, future: asyncio.Future) -> Any:
        # A timer, not asyncio.wait_for (a task-like wrapper per command): the hot path's commands are many.
        timer = asyncio.get_running_loop().call_later(TIMEOUT_SECONDS, _expire, protocol, future)
        try:
            reply = await future
        finally:
            timer.cancel()
        if isinstance(reply, rx.ResponseError):
            raise reply
        return reply

    async def execute(self, *args: Any) -> Any:
        protocol = await self._connection()
        return await self._reply(protocol, protocol.send(*args))

    async def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None


class Script:
    """A Lua script run by its SHA1 (EVALSHA), loaded into Redis the first time Redis does not know it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA1

    async def __call__(self, client: Client, keys: list[str], args: list[Any]) -> Any:
        try:
            return await client.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except rx.ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await client.execute("EVAL", self.source, len(keys), *keys, *args)  # caches it for next time


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Client] = weakref.WeakKeyDictionary()


def client() -> Client:
    """The running event loop's client for settings.REDIS_URL (which must be set)."""
    loop = asyncio.get_running_loop()
    found = _clients.get(loop)
    if found is None:
        found = _clients[loop] = Client(settings.REDIS_URL)
    return found


async def close() -> None:
    """Close the running event loop's connection, if it opened one (graceful stop)."""
    found = _clients.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.close()
