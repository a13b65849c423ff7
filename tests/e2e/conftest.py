"""A real ASGI server (uvicorn, config.asgi:application) in a background thread of the test process, on a
free 127.0.0.1 port, sharing the test database; tests drive it with the official `openai` SDK.

The database is used with transaction=True (data committed, visible to the server's threads); on SQLite
pytest-django's in-memory test database is a shared-cache database, so every thread sees the same one.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn
from django.core.cache import cache
from django.core.management import call_command

from accounts.auth import clear_cache
from accounts.keys import mint_key
from billing.pricing import NUSD_PER_USD
from billing.services import grant_credit
from gateway import catalog, services
from gateway.models import CatalogModel, Provider, Route
from gateway.router import breakers
from tests.gateway.misbehaving_upstream import MisbehavingUpstream

USD = NUSD_PER_USD


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # not the main thread
        pass


@pytest.fixture(scope="session")
def live_url(django_db_setup, django_db_blocker):
    port = _free_port()
    config = uvicorn.Config("config.asgi:application", host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off", access_log=False)
    server = _Server(config)
    thread = threading.Thread(target=server.run, name="e2e-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    # The server's pool threads kept persistent connections; PostgreSQL cannot drop the test database
    # while they are open.
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.fixture(scope="session")
def upstream_server():
    with MisbehavingUpstream() as server:
        yield server


@pytest.fixture
def upstream(upstream_server):
    upstream_server.reset()
    return upstream_server


@pytest.fixture(autouse=True)
def _fresh_state(settings):
    settings.GATEWAY_RETRY_BACKOFF_SECONDS = 0
    for reset in (clear_cache, catalog.invalidate, breakers.reset, services._team_store.clear, cache.clear):
        reset()
    yield
    for reset in (clear_cache, catalog.invalidate, breakers.reset, services._team_store.clear, cache.clear):
        reset()


@pytest.fixture
def acme(transactional_db, team):
    call_command("seed_catalog", quiet=True)
    grant_credit(team, amount_nusd=10 * USD, reason="e2e credit")
    return team


@pytest.fixture
def live_key(acme, owner) -> str:
    return mint_key(team=acme, name="e2e", created_by=owner).plaintext


@pytest.fixture
def base_url(live_url) -> str:
    return f"{live_url}/v1"


@pytest.fixture
def sdk(base_url, live_key):
    import openai

    with openai.OpenAI(base_url=base_url, api_key=live_key, max_retries=0, timeout=20) as client:
        yield client


def flaky_model(upstream: MisbehavingUpstream, mode: str, *, backup: bool = True, timeout: float = 2.0,
                read_timeout: float = 1.0, base_url: str | None = None) -> str:
    """A catalog model whose primary route is the misbehaving upstream (in `mode`), backed by the simulator."""
    provider, _ = Provider.objects.get_or_create(slug="flaky", defaults={
        "kind": "openai", "base_url": base_url or upstream.base_url, "timeout_seconds": timeout,
        "connect_timeout_seconds": 1.0, "options": {"read_timeout_seconds": read_timeout}})
    provider.api_key = "sk-upstream-test"
    provider.save()
    public_id = f"flaky-{mode}"
    model = CatalogModel.objects.create(public_id=public_id, input_price_nusd=1_000, output_price_nusd=2_000,
                                        supports_tools=True, supports_json=True)
    Route.objects.create(model=model, provider=provider, upstream_model=mode, priority="primary")
    if backup:
        Route.objects.create(model=model, provider=Provider.objects.get(slug="simulator"), upstream_model="sim",
                             priority="backup")
    catalog.invalidate()
    return public_id
