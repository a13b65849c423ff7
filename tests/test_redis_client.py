"""config/redis_client.py: commands pipelined on one connection per event loop, replies in order, and every way
Redis can fail turned into redis-py's exceptions (which the rate limiter answers with a 503). The failures are
played by a small RESP server on loopback; the rest runs against the real Redis when REDIS_URL is set."""

from __future__ import annotations

import asyncio
import contextlib
import os

import pytest
from redis import exceptions as rx

from config import redis_client
from tests.live_server import closed_port

REDIS_URL = os.environ.get("REDIS_URL")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="needs Redis (set REDIS_URL); CI's PostgreSQL pass has it")


@contextlib.asynccontextmanager
async def fake_redis(answer):
    """A RESP server on loopback: `answer(command, writer)` for each command it reads (a list of bytes)."""
    import hiredis

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = hiredis.Reader()
        try:
            while data := await reader.read(65536):
                parser.feed(data)
                while (command := parser.gets()) is not False:
                    await answer(command, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/3"
    finally:
        server.close()


def run(coro):
    return asyncio.run(coro)


def test_commands_sent_at_once_share_the_connection_and_each_gets_its_own_reply():
    seen = []

    async def answer(command, writer):
        seen.append(command)
        if command[0] == b"SELECT":
            writer.write(b"+OK\r\n")
        else:
            writer.write(b":%d\r\n" % int(command[1]))  # ECHO-like: the reply names the command it answers

    async def scenario():
        async with fake_redis(answer) as url:
            client = redis_client.Client(url)
            replies = await asyncio.gather(*(client.execute("GETNUM", i) for i in range(200)))
            await client.close()
            return replies

    assert run(scenario()) == list(range(200))
    assert seen[0] == [b"SELECT", b"3"]  # the URL's database, chosen once per connection
    assert sum(1 for c in seen if c[0] == b"SELECT") == 1


def test_an_unreachable_redis_is_a_connection_error_at_once():
    async def scenario():
        client = redis_client.Client(f"redis://127.0.0.1:{closed_port()}/0")
        with pytest.raises(rx.ConnectionError):
            await client.execute("PING")

    run(scenario())


def test_a_connection_that_drops_fails_what_waits_on_it_and_the_next_command_reconnects():
    connections = []

    async def answer(command, writer):
        if command[0] == b"SELECT":
            writer.write(b"+OK\r\n")
            connections.append(writer)
        elif command[0] == b"DROP":
            writer.transport.abort()  # the server goes away with a command unanswered
        else:
            writer.write(b"+PONG\r\n")

    async def scenario():
        async with fake_redis(answer) as url:
            client = redis_client.Client(url)
            with pytest.raises(rx.ConnectionError):
                await client.execute("DROP")
            assert await client.execute("PING") == b"PONG"
            await client.close()

    run(scenario())
    assert len(connections) == 2


def test_a_redis_that_stops_answering_is_a_timeout_and_the_connection_is_dropped(monkeypatch):
    monkeypatch.setattr(redis_client, "TIMEOUT_SECONDS", 0.2)
    connections = []

    async def answer(command, writer):
        if command[0] == b"SELECT":
            writer.write(b"+OK\r\n")
            connections.append(writer)
        elif command[0] == b"PING" and len(connections) > 1:
            writer.write(b"+PONG\r\n")
        # else: silence

    async def scenario():
        async with fake_redis(answer) as url:
            client = redis_client.Client(url)
            with pytest.raises(rx.TimeoutError):
                await client.execute("PING")
            assert await client.execute("PING") == b"PONG"  # on a new connection: no late reply mixed in
            await client.close()

    run(scenario())


def test_an_error_reply_is_a_response_error():
    async def answer(command, writer):
        writer.write(b"+OK\r\n" if command[0] == b"SELECT" else b"-ERR unknown command\r\n")

    async def scenario():
        async with fake_redis(answer) as url:
            client = redis_client.Client(url)
            with pytest.raises(rx.ResponseError, match="unknown command"):
                await client.execute("NOPE")
            await client.close()

    run(scenario())


@needs_redis
def test_a_script_redis_does_not_know_yet_is_loaded_and_run():
    script = redis_client.Script("return tonumber(ARGV[1]) + #KEYS")

    async def scenario():
        client = redis_client.Client(REDIS_URL)
        await client.execute("SCRIPT", "FLUSH")  # as after a Redis restart
        first = await script(client, ["a", "b"], [40])  # NOSCRIPT, then EVAL
        second = await script(client, ["a"], [1])  # EVALSHA: known now
        await client.close()
        return first, second

    assert run(scenario()) == (42, 2)


@needs_redis
def test_the_urls_database_is_the_one_written():
    import redis

    async def scenario():
        client = redis_client.Client(REDIS_URL)
        await client.execute("SET", "tollgate:test:redis-client", "here", "EX", 10)
        await client.close()

    run(scenario())
    assert redis.Redis.from_url(REDIS_URL).get("tollgate:test:redis-client") == b"here"


def test_the_urls_password_is_sent_first_and_a_refused_one_is_an_error_on_every_command():
    seen = []

    async def answer(command, writer):
        seen.append(command)
        if command[0] == b"AUTH":
            writer.write(b"+OK\r\n" if command[-1] == b"right" else b"-WRONGPASS invalid username-password pair\r\n")
        else:
            writer.write(b"+OK\r\n" if command[0] == b"SELECT" else b"+PONG\r\n")

    async def scenario():
        async with fake_redis(answer) as url:
            good = redis_client.Client(url.replace("redis://", "redis://:right@"))
            assert await good.execute("PING") == b"PONG"
            await good.close()
            bad = redis_client.Client(url.replace("redis://", "redis://:wrong@"))
            for _ in range(2):  # the refused connection is dropped: the next command tries again, and fails again
                with pytest.raises(rx.ResponseError, match="WRONGPASS"):
                    await bad.execute("PING")

    run(scenario())
    assert seen[:3] == [[b"AUTH", b"right"], [b"SELECT", b"3"], [b"PING"]]
    assert [c[0] for c in seen[3:]] == [b"AUTH", b"SELECT", b"AUTH", b"SELECT"]  # never a PING without a login
