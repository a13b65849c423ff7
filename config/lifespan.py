"""Process start and stop for the ASGI server.

uvicorn speaks the ASGI lifespan protocol: `startup` starts this process's background worker (config.background;
only in the embedded default, where there is no Celery worker) and warns about unsafe production settings;
`shutdown` closes the process's pools. Daphne (`make run`) does not send lifespan events, so the first HTTP
request does the startup work instead (`on_first_request`).
"""

from __future__ import annotations

import logging

from config import background

log = logging.getLogger("tollgate")
_started = False


def startup() -> None:
    global _started
    if _started:
        return
    _started = True
    background.start()
    for warning in production_warnings():
        log.warning(warning)


def production_warnings() -> list[str]:
    """Settings that are fine on a laptop and wrong in production (`manage.py check --deploy` fails on them)."""
    from config.checks import email_backend_problem

    return [problem for problem in (email_backend_problem(),) if problem]


async def shutdown() -> None:
    from billing.backends import postgres
    from gateway.providers.http import close_session

    background.stop()
    await close_session()
    await postgres.close_pool()


class Lifespan:
    async def __call__(self, scope, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def on_first_request(app):
    """Wrap an ASGI app so the first HTTP request runs `startup()` (for servers without lifespan events)."""

    async def wrapped(scope, receive, send):
        if not _started:
            startup()
        await app(scope, receive, send)

    return wrapped
