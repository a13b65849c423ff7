"""POST /v1/messages and /v1/messages/count_tokens through the production ASGI app in-process: Anthropic's
envelope for every error (authentication included) with request-id, x-api-key, holds from max_tokens, limits,
idempotency, test keys, streams that end early or break."""

from __future__ import annotations

import orjson
import pytest

from accounts.keys import mint_key
from billing.models import Hold, HoldStatus, Receipt, Wallet
from billing.reconcile import find_discrepancies
from gateway.models import CatalogModel
from gateway.price_book import current_price
from tests.asgi import V1
from tests.gateway.conftest import USD
from tests.gateway.test_responses_api import upstream_model

pytestmark = pytest.mark.django_db

HELLO = {"model": "demo-chat", "max_tokens": 20, "messages": [{"role": "user", "content": "Hello"}]}


def anthropic_error(response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind, body
    assert body["request_id"] == response["request-id"] == response["x-request-id"]
    return body


def frames(response) -> list[tuple[str, dict]]:
    out = []
    for frame in response.events():
        name, _, data = frame.partition(b"\ndata: ")
        out.append((name.removeprefix(b"event: ").decode(), orjson.loads(data)))
    return out


def test_x_api_key_authenticates_and_the_answer_is_an_anthropic_message(live_key):
    response = V1(None).post("/messages", HELLO, headers={"x-api-key": live_key, "anthropic-version": "2023-06-01"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"].startswith("msg_") and body["type"] == "message" and body["role"] == "assistant"
    assert set(body["usage"]) >= {"input_tokens", "output_tokens", "cache_read_input_tokens", "receipt_id"}
    assert response["request-id"] == response["x-request-id"]
    assert response["x-ratelimit-remaining-requests"]


def test_every_refusal_speaks_anthropics_envelope(live_key, funded_team, owner, seeded):
    anthropic_error(V1(None).post("/messages", HELLO), 401, "authentication_error")
    anthropic_error(V1("tg_live_garbage").post("/messages", HELLO), 401, "authentication_error")
    reader = mint_key(team=funded_team, name="r", created_by=owner, scopes=["models:read"]).plaintext
    anthropic_error(V1(reader).post("/messages", HELLO), 403, "permission_error")
    anthropic_error(V1(live_key).post("/messages", {**HELLO, "model": "nope"}), 404, "not_found_error")
    missing = {k: v for k, v in HELLO.items() if k != "max_tokens"}
    body = anthropic_error(V1(live_key).post("/messages", missing), 400, "invalid_request_error")
    assert "max_tokens" in body["error"]["message"]
    anthropic_error(V1(live_key).post("/messages", b"{not json"), 400, "invalid_request_error")
    anthropic_error(V1(live_key).post("/messages", {**HELLO, "max_tokens": 10**6}), 400, "invalid_request_error")
    Wallet.objects.filter(team=funded_team).update(balance_nusd=0)
    anthropic_error(V1(live_key).post("/messages", HELLO), 402, "billing_error")
    assert not Hold.objects.exists() and not Receipt.objects.exists()


def test_the_rate_limit_is_a_rate_limit_error_with_retry_after(funded_team, owner, seeded):
    limited = V1(mint_key(team=funded_team, name="slow", created_by=owner, rpm_limit=1).plaintext)
    assert limited.post("/messages", HELLO).status_code == 200
    refused = limited.post("/messages", HELLO)
    anthropic_error(refused, 429, "rate_limit_error")
    assert int(refused["Retry-After"]) >= 1


def test_the_hold_comes_from_max_tokens_and_the_charge_from_usage(live_key, funded_team):
    response = V1(live_key).post("/messages", {**HELLO, "max_tokens": 300})
    receipt = Receipt.objects.get(public_id=response.json()["usage"]["receipt_id"])
    model = current_price(CatalogModel.objects.get(public_id="demo-chat"))
    assert receipt.hold_amount_nusd >= 300 * model.output_price_nusd
    assert receipt.total_cost_nusd == (
        receipt.prompt_tokens * model.input_price_nusd + receipt.completion_tokens * model.output_price_nusd
    )
    assert Wallet.objects.get(team=funded_team).balance_nusd == 10 * USD - receipt.total_cost_nusd
    assert find_discrepancies() == []


def test_an_idempotent_replay_charges_once(live_key):
    v1 = V1(live_key)
    first = v1.post("/messages", HELLO, headers={"Idempotency-Key": "m-1"})
    replay = v1.post("/messages", HELLO, headers={"Idempotency-Key": "m-1"})
    assert replay["Idempotent-Replayed"] == "true" and replay.content == first.content
    assert Receipt.objects.count() == 1


def test_a_test_key_moves_no_money(test_key, funded_team):
    response = V1(test_key).post("/messages", {**HELLO, "stream": True})
    assert frames(response)[-1][0] == "message_stop"
    assert Receipt.objects.get().is_test
    assert Wallet.objects.get(team=funded_team).balance_nusd == 10 * USD and not Hold.objects.exists()


def test_a_stream_relays_anthropics_events_and_ends_with_the_priced_usage(live_key):
    response = V1(live_key).post("/messages", {**HELLO, "stream": True})
    got = frames(response)
    names = [name for name, _ in got]
    assert names[:4] == ["message_start", "ping", "content_block_start", "content_block_delta"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in got)
    start = got[0][1]["message"]
    assert start["id"].startswith("msg_") and start["model"] == "demo-chat"
    usage = got[-2][1]["usage"]
    receipt = Receipt.objects.get(public_id=usage["receipt_id"])
    assert receipt.streamed and usage["output_tokens"] == receipt.completion_tokens


def test_a_client_that_leaves_mid_stream_pays_for_what_was_produced(live_key, funded_team, settings):
    settings.SIMULATOR_TOKENS_PER_SECOND = 200
    body = {**HELLO, "max_tokens": 400, "stream": True, "messages": [{"role": "user", "content": "A long story"}]}
    V1(live_key).post("/messages", body, disconnect_after=4)
    receipt = Receipt.objects.get()
    assert receipt.status == "partial" and 0 < receipt.completion_tokens < 400
    assert Hold.objects.get().status == HoldStatus.SETTLED
    assert Wallet.objects.get(team=funded_team).held_nusd == 0
    assert find_discrepancies() == []


def test_an_upstream_that_breaks_mid_stream_ends_in_an_error_event(live_key, upstream):
    model = upstream_model(upstream, "drop-c10")
    response = V1(live_key).post("/messages", {**HELLO, "model": model, "stream": True})
    name, data = frames(response)[-1]
    assert name == "error" and data["type"] == "error" and data["error"]["type"] == "api_error"
    assert Receipt.objects.get().status == "partial"
    assert find_discrepancies() == []


def test_count_tokens_answers_without_a_hold_or_a_receipt(live_key):
    body = {"model": "demo-chat", "messages": [{"role": "user", "content": "Hello there"}], "system": "Be kind."}
    response = V1(live_key).post("/messages/count_tokens", body)
    assert response.status_code == 200, response.content
    longer = V1(live_key).post("/messages/count_tokens", {**body, "system": "Be kind, and very, very patient."})
    assert 0 < response.json()["input_tokens"] < longer.json()["input_tokens"]
    assert response["x-ratelimit-remaining-requests"]
    assert not Hold.objects.exists() and not Receipt.objects.exists()
    anthropic_error(V1(None).post("/messages/count_tokens", body), 401, "authentication_error")
    anthropic_error(V1(live_key).post("/messages/count_tokens", {**body, "model": "x"}), 404, "not_found_error")


def test_a_server_tool_is_refused_on_a_translated_route(live_key):
    body = {**HELLO, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}
    error = anthropic_error(V1(live_key).post("/messages", body), 400, "invalid_request_error")
    assert "only available on Anthropic models" in error["error"]["message"]
    assert Receipt.objects.get().status == "failed" and Receipt.objects.get().total_cost_nusd == 0
