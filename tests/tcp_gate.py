"""A TCP forwarder on 127.0.0.1 that can be shut like a gate: a database (or anything) that becomes unreachable
and reachable again on demand, without touching the real server behind it.

    with TcpGate("127.0.0.1", 5432) as gate:     # forwards 127.0.0.1:<gate.port> → 127.0.0.1:5432
        gate.shut()                              # existing connections reset, new ones refused
        gate.open()                              # accepting again

Runs its own event loop in a daemon thread, so sync and async tests can drive it."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from tests.live_server import loopback_socket


class TcpGate:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, int(port))
        sock = loopback_socket()
        self.port = sock.getsockname()[1]
        sock.close()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-gate", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------------------

    def __enter__(self) -> TcpGate:
        self._thread.start()
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _call(self, coro) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=5)

    def open(self) -> None:
        self._call(self._open())

    def shut(self) -> None:
        self._call(self._shut())

    # -- on the gate's loop ----------------------------------------------------------------------------------

    async def _open(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port, reuse_address=True)

    async def _shut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()  # RST: the peer sees its connection broken at once
        self._writers.clear()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.transport.abort()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)
