"""Concurrent requests against one wallet and one Idempotency-Key (PostgreSQL, real server)."""

from __future__ import annotations

import asyncio

import openai
import pytest

from accounts.keys import mint_key
from billing.models import Receipt, Wallet
from billing.reconcile import find_discrepancies
from billing.services import grant_credit
from tests.conftest import requires_postgres
from tests.e2e.conftest import settled

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), requires_postgres]
MSGS = [{"role": "user", "content": "hello"}]


def race(base_url: str, key: str, n: int, **create) -> list[int]:
    """`n` identical chat completions at once through the async SDK; the HTTP status of each."""

    async def one(client: openai.AsyncOpenAI) -> int:
        try:
            await client.chat.completions.create(**create)
            return 200
        except openai.APIStatusError as exc:
            return exc.status_code

    async def run() -> list[int]:
        async with openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=20) as client:
            return await asyncio.gather(*[one(client) for _ in range(n)])

    return asyncio.run(run())


def test_concurrent_requests_never_spend_more_than_the_wallet_holds(base_url, transactional_db, team, owner):
    from django.core.management import call_command

    call_command("seed_catalog", quiet=True)
    # demo-chat-mini holds ~ (prompt + 200 output tokens) × price: enough credit for only a few at once
    grant_credit(team, amount_nusd=400_000, reason="small credit")
    key = mint_key(team=team, name="race", created_by=owner).plaintext

    statuses = race(base_url, key, 24, model="demo-chat-mini", messages=MSGS, max_tokens=200)
    assert set(statuses) <= {200, 402}
    assert 200 in statuses and 402 in statuses
    settled()
    wallet = Wallet.objects.get(team=team)
    assert wallet.balance_nusd >= 0 and wallet.held_nusd == 0
    assert Receipt.objects.filter(status="succeeded").count() == statuses.count(200)
    assert find_discrepancies() == []


def test_concurrent_requests_with_one_idempotency_key_run_once(base_url, transactional_db, team, owner):
    from django.core.management import call_command

    call_command("seed_catalog", quiet=True)
    grant_credit(team, amount_nusd=10**9, reason="credit")
    key = mint_key(team=team, name="idem", created_by=owner).plaintext

    statuses = race(
        base_url, key, 10, model="demo-chat", messages=MSGS, max_tokens=20, extra_headers={"Idempotency-Key": "same"}
    )
    assert set(statuses) <= {200, 409}
    assert Receipt.objects.count() == 1
    assert find_discrepancies() == []
