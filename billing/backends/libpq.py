"""The hot path's two statements (a hold, a settlement) run on a pooled connection's libpq directly.

psycopg's cursor costs more CPU per statement than the statement costs PostgreSQL to parse and plan once it
is prepared: a cursor object, the query converted on each call, a prepared-statement manager, a lock, a
generator-driven wait. A `Statement` is converted once; each call dumps its values with psycopg's own adapters
(`Transformer`, so every value is typed and quoted exactly as psycopg would), prepares the statement on the
connection the first time it sees those types, sends it and waits for the socket on the event loop.

What stays psycopg's: the connection, its pool (which closes a connection returned mid-statement, so a
cancelled call never hands a busy connection to the next request), the type adapters and the exception classes
(an error reply raises the class of its SQLSTATE, a broken connection psycopg.OperationalError).
"""

from __future__ import annotations

import asyncio
import re
import weakref
from typing import Any

import psycopg
from psycopg import adapt, pq
from psycopg.adapt import PyFormat

_PARAM = re.compile(r"%\((\w+)\)s")


class Statement:
    """SQL with %(name)s parameters, converted once to $n placeholders."""

    def __init__(self, name: str, sql: str) -> None:
        names: list[str] = []

        def placeholder(match: re.Match) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        self.name = name
        self.sql = _PARAM.sub(placeholder, sql).encode()
        self.names = tuple(names)
        self.formats = [PyFormat.AUTO] * len(names)


class _State:
    """Per connection: its adapters, and the names it prepared each statement under (one per parameter types)."""

    __slots__ = ("prepared", "transformer")

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.transformer = adapt.Transformer(conn)
        self.prepared: dict[tuple[str, tuple[int, ...]], bytes] = {}


_states: weakref.WeakKeyDictionary[psycopg.AsyncConnection, _State] = weakref.WeakKeyDictionary()


async def fetchone(conn: psycopg.AsyncConnection, statement: Statement, params: dict[str, Any]) -> tuple | None:
    """Run the statement (autocommit) and return its first row, or None when it returned none."""
    tx, result = await _execute(conn, statement, params)
    if not result.ntuples:
        return None
    tx.set_pgresult(result)
    return tx.load_row(0, tuple)


async def fetchall(conn: psycopg.AsyncConnection, statement: Statement, params: dict[str, Any]) -> list[tuple]:
    """Run the statement (autocommit) and return all its rows."""
    tx, result = await _execute(conn, statement, params)
    tx.set_pgresult(result)
    return tx.load_rows(0, result.ntuples, tuple)


async def _execute(
    conn: psycopg.AsyncConnection, statement: Statement, params: dict[str, Any]
) -> tuple[Any, pq.abc.PGresult]:  # (its Transformer, the result)
    state = _states.get(conn)
    if state is None:
        state = _states[conn] = _State(conn)
    tx, pgconn = state.transformer, conn.pgconn
    values = tx.dump_sequence([params[name] for name in statement.names], statement.formats)
    types = tuple(tx.types or ())
    name = state.prepared.get((statement.name, types))
    if name is None:
        name = f"tg_{statement.name}_{len(state.prepared)}".encode()
        pgconn.send_prepare(name, statement.sql, param_types=types)
        _result(await _results(pgconn), pgconn, pq.ExecStatus.COMMAND_OK)
        state.prepared[statement.name, types] = name
    pgconn.send_query_prepared(name, values, param_formats=tx.formats)
    return tx, _result(await _results(pgconn), pgconn, pq.ExecStatus.TUPLES_OK)


def _result(results: list[pq.abc.PGresult], pgconn: pq.abc.PGconn, expected: pq.ExecStatus) -> pq.abc.PGresult:
    for result in results:
        if result.status == pq.ExecStatus.FATAL_ERROR:
            sqlstate = result.error_field(pq.DiagnosticField.SQLSTATE)
            message = (result.error_message or b"").decode(errors="replace").strip()
            raise _error_class(sqlstate)(message)
    if not results or results[-1].status != expected:
        if pgconn.status == pq.ConnStatus.BAD:
            raise psycopg.OperationalError(pgconn.get_error_message())
        raise psycopg.InterfaceError(f"unexpected result: {[r.status for r in results]}")
    return results[-1]


def _error_class(sqlstate: bytes | None) -> type[psycopg.Error]:
    try:
        return psycopg.errors.lookup(sqlstate.decode()) if sqlstate else psycopg.DatabaseError
    except KeyError:
        return psycopg.DatabaseError


async def _results(pgconn: pq.abc.PGconn) -> list[pq.abc.PGresult]:
    """Send what libpq buffered, then collect every result of the command (psycopg's connections are
    non-blocking: libpq never waits on the socket itself)."""
    loop = asyncio.get_running_loop()
    fd = pgconn.socket
    while pgconn.flush():
        await _ready(loop, fd, loop.add_writer, loop.remove_writer)
    out: list[pq.abc.PGresult] = []
    while True:
        while pgconn.is_busy():
            await _ready(loop, fd, loop.add_reader, loop.remove_reader)
            pgconn.consume_input()  # psycopg.OperationalError when the connection broke
        result = pgconn.get_result()
        if result is None:
            return out
        out.append(result)


def _wake(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, add, remove) -> None:
    future = loop.create_future()
    add(fd, _wake, future)
    try:
        await future
    finally:
        remove(fd)
