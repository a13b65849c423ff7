"""Under ASGI, Django runs each request's sync code on a thread started for that request: the database connection
it opens there must close when the request ends, or PostgreSQL's connections pile up (config/db.py). PostgreSQL
only: the embedded default's in-memory test database ignores close(), by design."""

from __future__ import annotations

import asyncio
import os
import threading

import aiohttp
import pytest
from django.core.handlers.asgi import ASGIHandler
from django.db import connection
from django.test.client import ClientHandler

from accounts.keys import mint_key
from accounts.models import Plan, Team
from config.db import close_request_thread_connections
from tests.conftest import requires_postgres

pytestmark = [requires_postgres, pytest.mark.postgres]


def _in_a_thread(sender) -> tuple[bool, bool]:
    """Open this thread's connection, send request_finished's receiver, say whether it was open before/after."""
    seen: list[bool] = []

    def work() -> None:
        connection.ensure_connection()
        seen.append(connection.connection is not None)
        close_request_thread_connections(sender)
        seen.append(connection.connection is not None)
        connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=30)
    return seen[0], seen[1]


@pytest.mark.django_db(transaction=True)
def test_a_request_thread_of_the_asgi_handler_closes_its_connection_when_the_request_ends():
    assert _in_a_thread(ASGIHandler) == (True, False)


@pytest.mark.django_db(transaction=True)
def test_other_handlers_and_the_main_thread_keep_their_connection():
    assert _in_a_thread(ClientHandler) == (True, True)  # Django's test client: not a per-request thread
    connection.ensure_connection()
    close_request_thread_connections(ASGIHandler)  # the main thread (the in-process test drivers run views here)
    assert connection.connection is not None


@pytest.mark.django_db
def test_an_open_transaction_is_never_closed_under_a_request():
    """Inside atomic(): closing would break the transaction; the receiver leaves it alone."""
    seen: list[bool] = []

    def work() -> None:
        from django.db import transaction

        with transaction.atomic():
            connection.ensure_connection()
            close_request_thread_connections(ASGIHandler)
            seen.append(connection.connection is not None)
        connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=30)
    assert seen == [True]


def _connections(name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [name])
        return cursor.fetchone()[0]


@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True)
def test_a_web_process_holds_a_bounded_number_of_postgres_connections_however_many_requests_it_served(owner):
    """A real `python -m config.serve` process answers 240 Django-view requests (ninja /v1/balance, the DRF keys
    list), 8 at a time. Before the fix, each left its connection open until the garbage collector found it: ~60 at
    once. Now the process keeps only its worker threads' and its lease's connections."""
    from accounts.services import create_team
    from tests.processes import server_env, start_server

    team = create_team(name="Pool", slug="pool", owner=owner)
    Team.objects.filter(pk=team.pk).update(plan=Plan.ENTERPRISE)  # no rate limit in the way
    key = mint_key(team=team, name="reads", created_by=owner, scopes=["billing:read", "keys:write"]).plaintext
    name = "tollgate-connection-test"
    server = start_server(DATABASE_URL=f"{server_env()['DATABASE_URL']}?application_name={name}")
    paths = ["/v1/balance", f"/api/v1/teams/{team.public_id}/keys/"]

    async def batch(start: int) -> list[int]:
        gate = asyncio.Semaphore(8)

        async def one(session: aiohttp.ClientSession, i: int) -> int:
            async with gate, session.get(server.url + paths[i % 2]) as response:
                await response.read()
                return response.status

        headers = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=60)) as session:
            return await asyncio.gather(*(one(session, start + i) for i in range(40)))

    statuses: list[int] = []
    peak = 0
    try:
        for start in range(0, 240, 40):
            statuses += asyncio.run(batch(start))
            peak = max(peak, _connections(name))
    finally:
        server.kill()
    assert set(statuses) == {200}
    # sampled between batches: the event loop's worker threads (asyncio's default, min(32, cores + 4)), the lease
    # renewer, one for slack
    assert peak <= min(32, (os.cpu_count() or 1) + 4) + 2, f"{peak} PostgreSQL connections held by one web process"
