"""The official openai SDK (sync and async) against a live server: every endpoint and every error class."""

from __future__ import annotations

import json
import time

import openai
import pytest

from accounts.keys import mint_key
from billing.models import Receipt, Wallet
from billing.reconcile import find_discrepancies
from tests.conftest import requires_postgres
from tests.e2e.conftest import settled

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_models_list_and_retrieve(sdk):
    ids = {m.id for m in sdk.models.list()}
    assert {"demo-chat", "demo-chat-mini", "demo-embed"} <= ids
    assert sdk.models.retrieve("demo-chat").id == "demo-chat"


def test_chat_with_usage_costs_and_headers(sdk, acme):
    raw = sdk.chat.completions.with_raw_response.create(
        model="demo-chat", messages=[{"role": "user", "content": "Say hello"}], max_tokens=20
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["x-ratelimit-remaining-requests"] == "59"
    extra = completion.usage.model_extra
    settled()
    receipt = Receipt.objects.get(public_id=extra["receipt_id"])
    assert receipt.request_id == raw.headers["x-request-id"]
    assert receipt.completion_tokens == completion.usage.completion_tokens
    assert completion.model_extra["routing"]["provider"] == "simulator"
    assert Wallet.objects.get(team=acme).balance_nusd == 10 * 10**9 - receipt.total_cost_nusd
    assert find_discrepancies() == []


def test_the_charge_is_readable_right_after_the_reply(base_url, live_key, acme):
    """The settlement is written just after the response goes out; a client that reads its receipt and
    balance at once (same connection, so same server process) still sees the charge, every time."""
    import httpx

    headers = {"Authorization": f"Bearer {live_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=20) as http:
        balance = 10 * 10**9
        for _ in range(20):
            reply = http.post(
                "/chat/completions",
                json={"model": "demo-chat", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
            )
            usage = reply.json()["usage"]
            receipt = http.get(f"/receipts/{usage['receipt_id']}")
            assert receipt.status_code == 200
            assert receipt.json()["total_cost_usd"] == usage["total_cost_usd"]
            balance -= Receipt.objects.get(public_id=usage["receipt_id"]).total_cost_nusd
            assert http.get("/balance").json()["credits"] == balance / 10**9
    assert find_discrepancies() == []


@requires_postgres  # where the live server settles after replying (tests/live_server.py)
def test_the_response_does_not_wait_for_its_settlement(sdk, acme, monkeypatch):
    """The reply goes out first; the receipt it names is written right after (here: once we let it)."""
    import asyncio
    import threading

    from billing import settlement

    gate, started = threading.Event(), threading.Event()
    record = settlement.record

    async def held_back(settlement):
        started.set()
        for _ in range(1000):  # bounded: 10 s
            if gate.is_set():
                break
            await asyncio.sleep(0.01)
        return await record(settlement)

    monkeypatch.setattr(settlement, "record", held_back)
    completion = sdk.chat.completions.create(
        model="demo-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    receipt_id = completion.usage.model_extra["receipt_id"]
    assert started.wait(5)
    assert not Receipt.objects.filter(public_id=receipt_id).exists()  # answered before the write
    gate.set()
    settled()
    receipt = Receipt.objects.get(public_id=receipt_id)
    assert receipt.total_cost_nusd == round(completion.usage.model_extra["total_cost_usd"] * 10**9)
    assert Wallet.objects.get(team=acme).balance_nusd == 10 * 10**9 - receipt.total_cost_nusd
    assert find_discrepancies() == []


def test_streaming_with_usage_ends_with_the_cost_chunk(sdk):
    stream = sdk.chat.completions.create(
        model="demo-chat",
        messages=[{"role": "user", "content": "Tell a story"}],
        max_tokens=30,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens > 0
    receipt = Receipt.objects.get(public_id=last.usage.model_extra["receipt_id"])
    assert receipt.streamed and receipt.status == "succeeded"
    assert receipt.completion_tokens == last.usage.completion_tokens
    assert last.model_extra["routing"]["routed_to"] == "demo-chat"


def test_a_tools_round_trip(sdk):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = sdk.chat.completions.create(model="demo-chat", messages=messages, tools=tools, tool_choice="required")
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"city": args["city"], "temp": 21})},
    ]
    second = sdk.chat.completions.create(model="demo-chat", messages=messages, tools=tools)
    assert second.choices[0].message.content
    assert second.choices[0].finish_reason in ("stop", "length")


def test_json_schema_output_is_valid(sdk):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    completion = sdk.chat.completions.create(
        model="demo-chat",
        messages=[{"role": "user", "content": "A person"}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}},
    )
    data = json.loads(completion.choices[0].message.content)
    assert isinstance(data["name"], str) and isinstance(data["age"], int)


def test_embeddings_single_batch_and_base64(sdk):
    one = sdk.embeddings.create(model="demo-embed", input="hello", dimensions=16)  # the SDK asks for base64
    assert len(one.data[0].embedding) == 16
    batch = sdk.embeddings.create(model="demo-embed", input=["a", "b"], encoding_format="float")
    assert len(batch.data) == 2
    again = sdk.embeddings.create(model="demo-embed", input="hello", dimensions=16, encoding_format="float")
    assert again.data[0].embedding == pytest.approx(one.data[0].embedding, rel=1e-6)


def test_the_sdk_raises_each_error_class(base_url, live_key, acme, owner, other_team, outsider):
    def client(key):
        return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=10)

    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.AuthenticationError):
        client("tg_live_wrong").chat.completions.create(model="demo-chat", messages=msgs)
    narrow = mint_key(team=acme, name="narrow", created_by=owner, allowed_models=["demo-chat-mini"]).plaintext
    with pytest.raises(openai.PermissionDeniedError):
        client(narrow).chat.completions.create(model="demo-chat", messages=msgs)
    slow = mint_key(team=acme, name="slow", created_by=owner, rpm_limit=1).plaintext
    client(slow).chat.completions.create(model="demo-chat", messages=msgs, max_tokens=5)
    with pytest.raises(openai.RateLimitError) as limited:
        client(slow).chat.completions.create(model="demo-chat", messages=msgs, max_tokens=5)
    assert limited.value.response.headers["retry-after"]
    broke = mint_key(team=other_team, name="broke", created_by=outsider).plaintext
    with pytest.raises(openai.APIStatusError) as unpaid:
        client(broke).chat.completions.create(model="demo-chat", messages=msgs)
    assert unpaid.value.status_code == 402
    with pytest.raises(openai.BadRequestError) as bad:
        client(live_key).chat.completions.create(model="demo-chat", messages=msgs, temperature=5)
    assert bad.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError):
        client(live_key).chat.completions.create(model="no-such-model", messages=msgs)


async def test_the_async_sdk_chats_and_streams(base_url, live_key):
    async with openai.AsyncOpenAI(base_url=base_url, api_key=live_key, max_retries=0, timeout=20) as client:
        completion = await client.chat.completions.create(
            model="demo-chat-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=8
        )
        assert completion.usage.completion_tokens <= 8
        stream = await client.chat.completions.create(
            model="demo-chat-mini", stream=True, messages=[{"role": "user", "content": "hi"}], max_tokens=8
        )
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        assert "".join(pieces)


@requires_postgres
def test_one_request_costs_two_database_statements_on_the_event_loop(sdk, acme, monkeypatch):
    """The production path (live server, PostgreSQL, the loop's pool): after the caches are warm, one plain
    request makes exactly two statements — the hold and the settlement — and no ORM query at all."""
    import psycopg
    from django.db.backends.utils import CursorWrapper

    def chat():
        sdk.chat.completions.create(model="demo-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
        settled()

    chat()  # warms the key, catalog and team caches and opens the pool
    from dashboard import live

    deadline = time.monotonic() + 5  # the live-update hook looks the team up once per process, in a thread
    while acme.id not in live._public_ids and time.monotonic() < deadline:
        time.sleep(0.01)
    chat()  # the pool's connections were just used: none needs its idle check
    from billing.backends import libpq

    statements, pooled, orm = [], [], []
    real_statement, real_execute, real_orm = libpq._execute, psycopg.AsyncConnection.execute, CursorWrapper._execute

    async def count_statements(conn, statement, params):
        statements.append(statement.name)
        return await real_statement(conn, statement, params)

    async def count_pooled(self, query, *args, **kwargs):
        pooled.append(str(query))
        return await real_execute(self, query, *args, **kwargs)

    def count_orm(self, sql, *args, **kwargs):
        orm.append(sql)
        return real_orm(self, sql, *args, **kwargs)

    monkeypatch.setattr(libpq, "_execute", count_statements)
    monkeypatch.setattr(psycopg.AsyncConnection, "execute", count_pooled)
    monkeypatch.setattr(CursorWrapper, "_execute", count_orm)
    chat()
    monkeypatch.undo()
    assert statements == ["hold", "settle"]
    assert pooled == []  # nothing else on the pool's connections (an idle check would be one)
    assert orm == []
