"""Concurrent Responses and Messages requests against one small wallet (PostgreSQL, real server, official SDKs):
never more spent than the wallet holds, one receipt per answer, stored responses only for answers, and the
ledger reconciles."""

from __future__ import annotations

import asyncio

import anthropic
import openai
import pytest

from accounts.keys import mint_key
from billing.models import Receipt, Wallet
from billing.reconcile import find_discrepancies
from billing.services import grant_credit
from gateway.models import StoredResponse
from tests.conftest import requires_postgres
from tests.e2e.conftest import settled

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), requires_postgres]


async def _status(call) -> int:
    try:
        await call
        return 200
    except (openai.APIStatusError, anthropic.APIStatusError) as exc:
        return exc.status_code


def test_concurrent_responses_and_messages_never_spend_more_than_the_wallet_holds(live, team, owner):
    from django.core.management import call_command

    call_command("seed_catalog", quiet=True)
    # demo-chat-mini holds ~ (prompt + 200 output tokens) × price: enough credit for only a few at once
    grant_credit(team, amount_nusd=400_000, reason="small credit")
    key = mint_key(team=team, name="race", created_by=owner).plaintext

    async def run() -> list[int]:
        async with (
            openai.AsyncOpenAI(base_url=f"{live.url}/v1", api_key=key, max_retries=0, timeout=20) as oa,
            anthropic.AsyncAnthropic(base_url=live.url, api_key=key, max_retries=0, timeout=20) as an,
        ):

            async def message(stream: bool) -> None:
                reply = await an.messages.create(
                    model="demo-chat-mini", max_tokens=200, stream=stream, messages=[{"role": "user", "content": "hi"}]
                )
                if stream:
                    async for _event in reply:  # read to the end: a client that leaves pays "partial"
                        pass

            calls = []
            for i in range(12):
                calls.append(oa.responses.create(model="demo-chat-mini", input="hello", max_output_tokens=200))
                calls.append(message(stream=i % 2 == 0))
            return await asyncio.gather(*[_status(c) for c in calls])

    statuses = asyncio.run(run())
    assert set(statuses) <= {200, 402}
    assert 200 in statuses and 402 in statuses
    settled()
    wallet = Wallet.objects.get(team=team)
    assert wallet.balance_nusd >= 0 and wallet.held_nusd == 0
    assert Receipt.objects.filter(status="succeeded").count() == statuses.count(200)
    answered = statuses[0::2].count(200)
    assert StoredResponse.objects.count() == answered
    assert find_discrepancies() == []
