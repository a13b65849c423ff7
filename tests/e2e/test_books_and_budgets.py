"""The reseller's books against the live server with the official openai SDK: cost caps the SDK sends, a price
change in the middle of concurrent traffic, exact margins (receipts = `manage.py books` = the Books page = the
ledger) and a project's budget raced by 50 requests (the concurrency tests on PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import timedelta

import openai
import pytest
from django.core.management import call_command
from django.db.models import Sum
from django.test import Client
from django.utils import timezone

from accounts.keys import mint_key
from accounts.models import User
from accounts.projects import create_project
from billing import books
from billing.models import Hold, HoldStatus, LedgerEntry, LedgerKind, Receipt, SpendCounter
from billing.money import usd
from billing.reconcile import find_discrepancies
from billing.services import grant_credit
from gateway import catalog, price_book
from gateway.models import CatalogModel, Provider, Route
from gateway.price_book import create_model
from tests.conftest import requires_postgres
from tests.e2e.conftest import USD, settled

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
HELLO = [{"role": "user", "content": "Tell me a story about a toll road."}]


def receipt(request_id: str) -> Receipt:
    settled()
    return Receipt.objects.get(request_id=request_id)


def by_id(public_id: str) -> Receipt:
    return Receipt.objects.get(public_id=public_id)


def test_the_sdk_sends_a_cost_cap_as_a_header_or_a_body_field(sdk, acme):
    plain = sdk.chat.completions.with_raw_response.create(
        model="demo-chat", messages=HELLO, max_tokens=2_000, extra_headers={"Tollgate-Max-Cost": "0.0003"}
    )
    capped = receipt(plain.headers["x-request-id"])
    assert capped.max_cost_nusd == 300_000 and capped.hold_amount_nusd <= 300_000
    assert plain.parse().usage.model_extra["total_cost_usd"] <= 0.0003
    body = sdk.chat.completions.with_raw_response.create(
        model="demo-chat", messages=HELLO, max_tokens=2_000, extra_body={"max_cost_usd": 0.0002}
    )
    assert receipt(body.headers["x-request-id"]).max_cost_nusd == 200_000
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(
            model="demo-chat", messages=HELLO, extra_headers={"Tollgate-Max-Cost": "0.000000001"}
        )
    assert exc.value.code == "max_cost_too_low"


def test_the_sdk_sees_a_capped_stream_end_with_finish_reason_length(sdk, acme, upstream):
    provider = Provider.objects.create(slug="verbose", kind="openai", base_url=upstream.base_url, timeout_seconds=5)
    model = create_model("ok-c300-d2", input_price_nusd=1_000, output_price_nusd=2_000)
    Route.objects.create(model=model, provider=provider, upstream_model="ok-c300-d2")
    catalog.invalidate()
    stream = sdk.chat.completions.create(
        model="ok-c300-d2",
        messages=HELLO,
        max_tokens=2_000,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"Tollgate-Max-Cost": "0.0001"},
    )
    chunks = list(stream)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    usage = chunks[-1].usage
    settled()
    cut = Receipt.objects.get(public_id=usage.model_extra["receipt_id"])
    assert cut.completion_tokens == usage.completion_tokens < 300
    assert cut.total_cost_nusd <= cut.hold_amount_nusd <= 100_000


def test_the_sdk_reads_the_current_and_next_prices(sdk, acme):
    new = price_book.add_price_version(
        CatalogModel.objects.get(public_id="demo-chat"), price_book.Prices(600, 300, 1_800)
    )
    model = sdk.models.retrieve("demo-chat")
    pricing = model.model_extra["pricing"]
    assert pricing["input"] == "0.5" and pricing["next"]["input"] == "0.6"
    assert pricing["next"]["effective_at"] == int(new.effective_at.timestamp())


@requires_postgres
def test_concurrent_traffic_through_a_price_change_reconciles_to_the_nano_dollar(
    live, team, owner, other_team, outsider, settings
):
    """Two teams, plain and streamed requests at once, caps on some; a price change takes effect while the first
    wave is still streaming. Every receipt is priced at its hold's version; the sum of the receipts is what the
    books command prints, what the Books page shows and what the ledger charged."""
    settings.GATEWAY_CATALOG_TTL_SECONDS = 0.5  # the change may take effect 2.5 s after it is made
    settings.SIMULATOR_TOKENS_PER_SECOND = 10  # 30 tokens: a stream takes ~3 s, across the change
    call_command("seed_catalog", quiet=True)
    for t in (team, other_team):
        grant_credit(t, amount_nusd=50 * USD, reason="e2e credit")
    keys = [
        mint_key(team=team, name="a", created_by=owner).plaintext,
        mint_key(team=other_team, name="b", created_by=outsider).plaintext,
    ]
    base_url = f"{live.url}/v1"
    chat_model = CatalogModel.objects.get(public_id="demo-chat")
    old = price_book.current_price(chat_model)

    async def one(key: str, i: int) -> tuple[str, bool]:
        """The receipt id of one request (plain, or streamed with its usage chunk) and whether it was demo-chat."""
        async with openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30) as client:
            extra = {"Tollgate-Max-Cost": "0.0001"} if i % 3 == 0 else {}
            model = "demo-chat" if i % 2 == 0 else "demo-chat-mini"
            if i % 2:
                reply = await client.chat.completions.create(
                    model=model, messages=HELLO, max_tokens=30, extra_headers=extra
                )
                return reply.usage.model_extra["receipt_id"], False
            stream = await client.chat.completions.create(
                model=model,
                messages=HELLO,
                max_tokens=30,
                stream=True,
                stream_options={"include_usage": True},
                extra_headers=extra,
            )
            chunks = [chunk async for chunk in stream]
            return chunks[-1].usage.model_extra["receipt_id"], True

    async def traffic() -> tuple[list, list, object]:
        first = [asyncio.ensure_future(one(keys[i % 2], i)) for i in range(16)]
        while await Hold.objects.acount() < 16:  # the whole first wave is held at the old prices
            await asyncio.sleep(0.02)
        from asgiref.sync import sync_to_async

        new = await sync_to_async(price_book.add_price_version)(chat_model, price_book.Prices(700, 350, 2_100))
        await asyncio.sleep(max(0.0, (new.effective_at - timezone.now()).total_seconds()) + 0.05)
        second = [asyncio.ensure_future(one(keys[i % 2], i)) for i in range(16)]
        return await asyncio.gather(*first), await asyncio.gather(*second), new

    started = time.monotonic()
    first, second, new = asyncio.run(traffic())
    settled()
    assert time.monotonic() - started < 60
    for receipt_id, is_chat in first:
        if is_chat:
            r = by_id(receipt_id)
            assert r.price_version == old.public_id and r.input_price_nusd == old.input_price_nusd
            assert r.created_at > new.effective_at  # streamed across the change, priced at its hold's version
    for receipt_id, is_chat in second:
        if is_chat:
            assert by_id(receipt_id).price_version == new.public_id and by_id(receipt_id).input_price_nusd == 700
    capped = Receipt.objects.exclude(max_cost_nusd=None)
    assert capped.count() > 0 and all(r.total_cost_nusd <= r.max_cost_nusd for r in capped)

    live_receipts = Receipt.objects.filter(is_test=False)
    revenue = sum(r.charged_nusd for r in live_receipts)
    cost = live_receipts.aggregate(s=Sum("upstream_cost_nusd"))["s"]
    assert live_receipts.count() == 32 and revenue > cost > 0
    assert revenue == -LedgerEntry.objects.filter(kind=LedgerKind.CHARGE).aggregate(s=Sum("amount_nusd"))["s"]
    today = timezone.now().date()
    report = books.books(today - timedelta(days=1), today)
    assert (report.total.revenue_nusd, report.total.cost_nusd) == (revenue, cost)
    from io import StringIO

    out = StringIO()
    call_command(
        "books", "--since", (today - timedelta(days=1)).isoformat(), "--until", today.isoformat(), "--json", stdout=out
    )
    printed = json.loads(out.getvalue())
    assert (printed["total"]["revenue_nusd"], printed["total"]["upstream_cost_nusd"]) == (revenue, cost)
    assert sum(line["margin_nusd"] for line in printed["team"]) == revenue - cost
    staff = Client()
    staff.force_login(User.objects.create_user(email="ops@tollgate.test", password="x-very-secret-1", is_staff=True))
    page = staff.get("/operator/books/", {"since": (today - timedelta(days=1)).isoformat()}).content.decode()
    assert re.search(r'data-testid="books-margin">([^<]+)<', page).group(1) == usd(revenue - cost)
    assert re.search(r'data-testid="books-revenue">([^<]+)<', page).group(1) == usd(revenue)
    assert not Hold.objects.filter(status=HoldStatus.OPEN).exists() and find_discrepancies() == []


@requires_postgres
def test_fifty_requests_race_for_a_projects_budget(live, team, owner):
    call_command("seed_catalog", quiet=True)
    grant_credit(team, amount_nusd=100 * USD, reason="plenty: only the budget can refuse")
    budget = 2_000_000  # $0.002: a demo-chat hold of ~200 output tokens is ~$0.0003, so a handful at once
    project = create_project(actor=None, team=team, name="race", monthly_budget_nusd=budget)
    keys = [mint_key(team=team, name=f"k{i}", created_by=owner, project=project).plaintext for i in range(5)]
    base_url = f"{live.url}/v1"

    async def one(key: str) -> tuple[int, str | None]:
        async with openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30) as client:
            try:
                await client.chat.completions.create(model="demo-chat", messages=HELLO, max_tokens=200)
                return 200, None
            except openai.APIStatusError as exc:
                return exc.status_code, exc.body.get("limit") if isinstance(exc.body, dict) else None

    async def race():
        return await asyncio.gather(*[one(keys[i % 5]) for i in range(50)])

    results = asyncio.run(race())
    settled()
    statuses = [s for s, _ in results]
    assert set(statuses) <= {200, 402} and 200 in statuses and 402 in statuses
    assert {limit for status, limit in results if status == 402} == {"project"}
    spent = Receipt.objects.filter(project=project).aggregate(s=Sum("total_cost_nusd"))["s"]
    assert Receipt.objects.filter(project=project, status="succeeded").count() == statuses.count(200)
    assert spent <= budget and SpendCounter.objects.get(project=project).used_nusd == spent
    assert not Hold.objects.filter(status=HoldStatus.OPEN).exists() and find_discrepancies() == []
