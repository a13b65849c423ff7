"""Webhook fixtures: a real receiver on 127.0.0.1, endpoints registered through the service, the README's
verification snippet (every test verifies signatures with the code customers copy), and a driver for the retry
schedule (config.background.run_due) that runs after-commit work like production does."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from accounts.auth import clear_cache
from config import background
from tests.webhooks.receiver import Receiver, running
from webhooks import services
from webhooks.models import Endpoint

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_snippet() -> str:
    """The Python block of the README's Webhooks section that defines `receive`."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    return next(block for block in blocks if "def receive(" in block)


def load_snippet() -> dict:
    namespace: dict = {}
    exec(compile(readme_snippet(), "README.md", "exec"), namespace)  # noqa: S102 - our own README, as printed
    return namespace


@pytest.fixture
def snippet() -> dict:
    """A fresh copy of the README snippet's namespace (its `seen` set starts empty)."""
    return load_snippet()


def verifies(request, secret: str) -> bool:
    """Does the README's `receive` accept this received request with `secret`? (A fresh copy each time, so the
    de-duplication of one check does not hide another.)"""
    try:
        load_snippet()["receive"](request.body, request.header("Tollgate-Signature"), secret)
    except ValueError:
        return False
    return True


@pytest.fixture(autouse=True)
def _clean_slate(settings):
    """Loopback receivers are private addresses over plain http: allowed here, refused by the SSRF tests."""
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    background.worker.clear()
    clear_cache()
    yield
    background.worker.clear()
    clear_cache()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP server on 127.0.0.1 that records what it receives (tests/webhooks/receiver.py)."""
    with running() as server:
        yield server


@pytest.fixture
def drive(django_capture_on_commit_callbacks):
    """Run the background jobs due `advance` seconds from now (retries), with their after-commit work."""

    def run(advance: float = 0.0) -> int:
        with django_capture_on_commit_callbacks(execute=True):
            return background.run_due(advance=advance)

    return run


def add_endpoint(team, owner, url: str, *, events=("*",), **fields) -> tuple[Endpoint, str]:
    actor = services.Actor.for_user(owner, team.public_id)
    created = services.create_endpoint(actor=actor, url=url, events=list(events), **fields)
    return created.endpoint, created.secret


@pytest.fixture
def hook(team, owner, receiver):
    """An endpoint of Acme subscribed to everything, pointing at the receiver: (endpoint, secret)."""
    return add_endpoint(team, owner, receiver.url)


@pytest.fixture
def dns(monkeypatch) -> dict[str, list[str]]:
    """Pretend DNS: `dns["hooks.example.com"] = ["93.184.216.34"]` (a list, or a function of how many times the
    name was looked up before; [] fails the lookup); other names and IP literals resolve for real."""
    answers: dict = {}
    asked: dict[str, int] = {}
    real = socket.getaddrinfo

    def lookup(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        found = answers[host]
        if callable(found):
            found = found(asked.get(host, 0))
        asked[host] = asked.get(host, 0) + 1
        if not found:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in found
        ]

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    return answers
