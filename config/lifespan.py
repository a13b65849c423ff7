"""Process start and stop for the ASGI server.

uvicorn speaks the ASGI lifespan protocol: `startup` starts this process's background worker (config.background;
only in the embedded default, where there is no Celery worker) and warns about unsafe production settings.
Daphne (`make run`) does not send lifespan events, so the first HTTP request does the startup work instead
(`on_first_request`).

A graceful stop (SIGTERM): uvicorn stops accepting, lets open requests finish for
`--timeout-graceful-shutdown` seconds (SHUTDOWN_GRACE_SECONDS in deploy/), then cancels the rest, whose streams
settle what they produced as `partial`. Then `shutdown` runs the hooks apps registered (the gateway waits for its
money work, at most SHUTDOWN_DRAIN_SECONDS), stops the background worker, closes the pools, and ends this
process's hold lease, so anything still open is released by the next sweep instead of after the lease runs out.
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


# (order, async callable) pairs apps register in AppConfig.ready, run at shutdown from the lowest order up.
shutdown_hooks: list = []


def on_shutdown(hook, *, order: int) -> None:
    if all(h is not hook for _o, h in shutdown_hooks):
        shutdown_hooks.append((order, hook))
        shutdown_hooks.sort(key=lambda pair: pair[0])


async def shutdown() -> None:
    from asgiref.sync import sync_to_async

    for _order, hook in shutdown_hooks:
        try:
            await hook()
        except Exception:
            log.exception("shutdown hook %s failed", getattr(hook, "__qualname__", hook))
    await sync_to_async(background.stop)()


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
