"""One shared, pooled aiohttp session per event loop.

aiohttp relays a stream for a fraction of httpx's CPU (DESIGN.md, bench/results), but only if the
session, its connection pool and its DNS cache are reused: creating a session per request costs a
new TCP (and TLS) handshake every time. A session is bound to the loop it was created on, so we keep
one per loop (tests run a fresh loop per test; servers run one loop per process).

Timeouts are per request (`client_timeout(config)`), not per session, so providers with different
timeouts share the pool.

Shutdown: `await close_session()` on the serving loop (ASGI lifespan shutdown, test teardown);
`close_all_sessions_sync()` runs at interpreter exit for whatever is left.
"""

from __future__ import annotations

import asyncio
import atexit
import weakref

import aiohttp

from gateway.providers.base import ProviderConfig

# Thousands of concurrent streams are the design target; 0 would mean "unlimited", a bound keeps a
# runaway client from exhausting file descriptors.
MAX_CONNECTIONS = 8192
KEEPALIVE_SECONDS = 75.0
DNS_CACHE_SECONDS = 300

_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = weakref.WeakKeyDictionary()


def _new_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=MAX_CONNECTIONS,
        limit_per_host=0,
        keepalive_timeout=KEEPALIVE_SECONDS,
        ttl_dns_cache=DNS_CACHE_SECONDS,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),  # per request, see client_timeout()
        auto_decompress=True,
        raise_for_status=False,
        trust_env=False,  # never route upstream traffic through a proxy picked up from the environment
        skip_auto_headers=("User-Agent",),
        headers={"User-Agent": "tollgate-gateway"},
    )


def get_session() -> aiohttp.ClientSession:
    """The pooled session of the running event loop, created on first use."""
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        _drop_sessions_of_closed_loops()
        session = _new_session()
        _sessions[loop] = session
    return session


def client_timeout(config: ProviderConfig) -> aiohttp.ClientTimeout:
    """`timeout_seconds` bounds the whole call (stream included); `read_timeout_seconds` in options bounds
    upstream silence between two reads (defaults to the whole budget)."""
    read = config.options.get("read_timeout_seconds") if config.options else None
    return aiohttp.ClientTimeout(
        total=config.timeout_seconds or None,
        sock_connect=config.connect_timeout_seconds or None,
        sock_read=float(read) if read else None,
    )


async def close_session() -> None:
    """Close the running loop's session (lifespan shutdown, test teardown)."""
    loop = asyncio.get_running_loop()
    session = _sessions.pop(loop, None)
    if session is not None and not session.closed:
        await session.close()


def _close_sync(session: aiohttp.ClientSession) -> None:
    connector = session.connector
    if connector is not None and not connector.closed:
        connector._close()  # the synchronous part of close(): the loop may be gone, there is nothing to await on


def _drop_sessions_of_closed_loops() -> None:
    for loop, session in list(_sessions.items()):
        if loop.is_closed():
            _sessions.pop(loop, None)
            _close_sync(session)


def close_all_sessions_sync() -> None:
    """Close every session without awaiting (interpreter exit): frees the sockets, silences warnings."""
    for loop, session in list(_sessions.items()):
        _sessions.pop(loop, None)
        _close_sync(session)


atexit.register(close_all_sessions_sync)
