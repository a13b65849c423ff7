"""Streams through the production ASGI application in-process (tests/asgi.py): SSE framing, idempotent
replay, a client that leaves, an upstream that breaks after delivering output."""

from __future__ import annotations

import orjson
import pytest

from billing.models import Hold, HoldStatus, Receipt, Wallet
from tests.asgi import V1
from tests.gateway.conftest import chat

pytestmark = pytest.mark.django_db(transaction=True)


def _data(frame: bytes) -> dict:
    return orjson.loads(frame.removeprefix(b"data: "))


async def test_a_stream_ends_with_usage_and_done(live_key):
    response = await V1(live_key).apost("/chat/completions", chat(stream=True, stream_options={"include_usage": True}))
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/event-stream")
    frames = response.events()
    assert frames[-1] == b"data: [DONE]"
    usage_chunk = _data(frames[-2])
    assert usage_chunk["choices"] == []
    receipt = await Receipt.objects.aget(public_id=usage_chunk["usage"]["receipt_id"])
    assert receipt.streamed and receipt.completion_tokens == usage_chunk["usage"]["completion_tokens"]
    assert all(_data(f)["id"] == usage_chunk["id"] for f in frames[:-1])


async def test_an_idempotent_stream_is_replayed_byte_for_byte(live_key):
    v1 = V1(live_key)
    headers = {"Idempotency-Key": "stream-1"}
    body = chat(stream=True, stream_options={"include_usage": True})
    first = await v1.apost("/chat/completions", body, headers=headers)
    replay = await v1.apost("/chat/completions", body, headers=headers)
    assert replay["Idempotent-Replayed"] == "true"
    assert replay["Content-Type"].startswith("text/event-stream")
    assert replay.content == first.content
    assert await Receipt.objects.acount() == 1


async def test_a_client_that_leaves_mid_stream_pays_for_what_was_produced(live_key, funded_team, settings):
    settings.SIMULATOR_TOKENS_PER_SECOND = 200  # 5 ms a token: the client leaves long before the end
    body = {
        "model": "demo-chat",
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "stream": True,
        "max_tokens": 400,
    }
    response = await V1(live_key).apost("/chat/completions", body, disconnect_after=3)
    assert response.status_code == 200
    receipt = await Receipt.objects.aget()
    assert receipt.status == "partial" and 0 < receipt.completion_tokens < 400
    assert receipt.total_cost_nusd < receipt.hold_amount_nusd
    hold = await Hold.objects.aget()
    assert hold.status == HoldStatus.SETTLED
    wallet = await Wallet.objects.aget(team=funded_team)
    assert wallet.held_nusd == 0


async def test_a_bad_request_gets_the_envelope_on_the_streaming_path_too(live_key):
    response = await V1(live_key).apost("/chat/completions", {"model": "demo-chat", "messages": [], "stream": True})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages"
    assert await Receipt.objects.acount() == 0 and await Hold.objects.acount() == 0
