"""SIGTERM during open streams (issue 16): the process stops accepting, lets the streams run for its grace
period, ends the rest as `partial` and settles them, and exits 0; every hold ends with a receipt."""

from __future__ import annotations

import asyncio
import time

import pytest
from django.core.management import call_command

from accounts.keys import mint_key
from billing.models import Hold, HoldStatus, Receipt
from billing.money import NUSD_PER_USD
from billing.reconcile import find_discrepancies
from billing.services import grant_credit
from tests.conftest import requires_postgres
from tests.processes import open_streams, start_server

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

STREAMS = 20


BODY = {
    "model": "demo-chat",
    "stream": True,
    "max_tokens": 600,
    "stream_options": {"include_usage": True},
    "messages": [{"role": "user", "content": "Tell me a very long story."}],
}


def test_sigterm_during_twenty_open_streams_settles_every_one_and_exits_zero(team, owner):
    call_command("seed_catalog", quiet=True)
    grant_credit(team, amount_nusd=10 * NUSD_PER_USD, reason="shutdown test")
    key = mint_key(team=team, name="shutdown", created_by=owner).plaintext
    # 2 tokens a second: every stream would run for tens of seconds; the grace period is 2 s.
    server = start_server(grace_seconds=2, SIMULATOR_TOKENS_PER_SECOND="2", HOLD_LEASE_RENEWAL="1")
    try:

        async def scenario() -> tuple[list[bytes], int, float]:
            started = asyncio.Event()
            streams = asyncio.ensure_future(open_streams(server.url, key, BODY, STREAMS, started))
            await asyncio.wait_for(started.wait(), timeout=20)
            signalled = time.monotonic()
            code = await asyncio.to_thread(server.terminate, 30)
            return await streams, code, time.monotonic() - signalled

        received, code, took = asyncio.run(scenario())
    finally:
        server.kill()
    assert code == 0, server.output()[-3000:]
    assert took < 2 + 10 + 5  # the grace period, the drain, and start-up slack
    assert all(r.startswith(b"data: ") for r in received)
    assert all(b'"code":"server_shutting_down"' in r for r in received)  # each cut stream says why, in-band
    assert not Hold.objects.filter(status=HoldStatus.OPEN).exists()  # every hold ended
    receipts = Receipt.objects.filter(team=team)
    assert receipts.count() == STREAMS
    assert set(receipts.values_list("status", flat=True)) == {"partial"}  # cut, and paid for what they produced
    assert all(r.completion_tokens > 0 and r.total_cost_nusd > 0 for r in receipts)
    assert find_discrepancies() == []
