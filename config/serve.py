"""Run a production web process: uvicorn (uvloop, httptools) serving config.asgi:application, with the graceful stop
Tollgate promises.

    python -m config.serve --port 8001 [--host 127.0.0.1] [--workers 1]

What it adds to `uvicorn config.asgi:application …`: the grace period comes from SHUTDOWN_GRACE_SECONDS, the
lifespan protocol is on (config/lifespan.py settles what was cut and closes the pools), and a graceful stop
exits 0. (uvicorn re-raises SIGTERM once it has stopped, so a single process would die "of" the signal, exit
status 143, though nothing went wrong.) deploy/systemd/tollgate-web@.service runs this.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Iterator

import uvicorn
from uvicorn.supervisors import Multiprocess

from config.env import env_int

APP = "config.asgi:application"
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's handlers, without re-raising the signal after the graceful stop."""
        original = {sig: signal.signal(sig, self.handle_exit) for sig in SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def config_for(*, host: str, port: int, workers: int) -> uvicorn.Config:
    return uvicorn.Config(
        APP,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        backlog=4096,
        log_level=os.environ.get("UVICORN_LOG_LEVEL", "warning"),
        timeout_graceful_shutdown=env_int("SHUTDOWN_GRACE_SECONDS", 30),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="processes on this port (one per core)")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    config = config_for(host=args.host, port=args.port, workers=args.workers)
    if args.workers > 1:  # the supervisor exits 0 once its workers stopped
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
