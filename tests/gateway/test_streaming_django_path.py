"""The ninja route streams through the same relay as the consumer (Django's async client)."""

from __future__ import annotations

import orjson
import pytest
from django.test import AsyncClient

from billing.models import Receipt
from tests.gateway.conftest import chat

pytestmark = pytest.mark.django_db(transaction=True)


async def _collect(response) -> bytes:
    return b"".join([part async for part in response.streaming_content])


async def test_a_stream_over_the_django_path_ends_with_usage_and_done(live_key):
    response = await AsyncClient().post(
        "/v1/chat/completions",
        orjson.dumps(chat(stream=True, stream_options={"include_usage": True})),
        content_type="application/json",
        headers={"Authorization": f"Bearer {live_key}"},
    )
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/event-stream")
    raw = await _collect(response)
    frames = [f for f in raw.split(b"\n\n") if f]
    assert frames[-1] == b"data: [DONE]"
    usage_chunk = orjson.loads(frames[-2].removeprefix(b"data: "))
    assert usage_chunk["choices"] == []
    receipt = await Receipt.objects.aget(public_id=usage_chunk["usage"]["receipt_id"])
    assert receipt.streamed and receipt.completion_tokens == usage_chunk["usage"]["completion_tokens"]


async def test_an_idempotent_stream_is_replayed_byte_for_byte(live_key):
    client = AsyncClient()
    headers = {"Authorization": f"Bearer {live_key}", "Idempotency-Key": "stream-1"}
    body = orjson.dumps(chat(stream=True, stream_options={"include_usage": True}))
    first = await _collect(
        await client.post("/v1/chat/completions", body, content_type="application/json", headers=headers)
    )
    replay = await client.post("/v1/chat/completions", body, content_type="application/json", headers=headers)
    assert replay["Idempotent-Replayed"] == "true"
    assert replay["Content-Type"].startswith("text/event-stream")
    assert replay.content == first
    assert await Receipt.objects.acount() == 1
