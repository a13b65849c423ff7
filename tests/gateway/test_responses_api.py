"""POST /v1/responses through the production ASGI app in-process: the hold from max_output_tokens, receipts,
stored responses scoped to the team, previous_response_id, idempotency, test keys, streams that end early."""

from __future__ import annotations

import orjson
import pytest
from asgiref.sync import async_to_sync

from accounts.keys import mint_key
from billing import pricing
from billing.models import Hold, HoldStatus, Receipt, Wallet
from billing.reconcile import find_discrepancies
from billing.services import grant_credit
from gateway import catalog
from gateway.models import CatalogModel, Provider, Route, StoredResponse
from gateway.price_book import create_model, current_price
from tests.asgi import V1, request
from tests.gateway.conftest import USD

pytestmark = pytest.mark.django_db


def events(response) -> list[dict]:
    out = []
    for frame in response.events():
        name, _, data = frame.partition(b"\ndata: ")
        payload = orjson.loads(data)
        assert name == b"event: " + payload["type"].encode()
        out.append(payload)
    return out


def upstream_model(upstream, mode: str, **flags) -> str:
    """A catalog model routed (only) to the misbehaving OpenAI-compatible upstream, in `mode`."""
    provider, _ = Provider.objects.get_or_create(
        slug="compat", defaults={"kind": "openai", "base_url": upstream.base_url, "timeout_seconds": 5}
    )
    model = create_model(f"compat-{mode}", input_price_nusd=1_000, output_price_nusd=2_000, **flags)
    Route.objects.create(model=model, provider=provider, upstream_model=mode)
    catalog.invalidate()
    return model.public_id


def test_the_hold_is_the_prompt_estimate_plus_max_output_tokens(live_key):
    response = V1(live_key).post("/responses", {"model": "demo-chat", "input": "echo: hi", "max_output_tokens": 100})
    assert response.status_code == 200, response.content
    body = response.json()
    receipt = Receipt.objects.get(public_id=body["usage"]["receipt_id"])
    version = current_price(CatalogModel.objects.get(public_id="demo-chat"))
    prices = pricing.Prices(input_nusd=version.input_price_nusd, output_nusd=version.output_price_nusd)
    assert receipt.hold_amount_nusd == pricing.hold_amount(
        prompt_tokens_estimate=receipt.prompt_tokens + (receipt.prompt_tokens * 10 + 99) // 100,
        max_output_tokens=100,
        prices=prices,
    )
    assert receipt.total_cost_nusd == receipt.prompt_tokens * prices.input_nusd + 1 * prices.output_nusd
    assert response["x-ratelimit-remaining-requests"] and response["tollgate-version"] == "2026-12-01"
    assert StoredResponse.objects.filter(response_id=body["id"]).exists()


def test_a_request_that_asks_for_more_output_than_the_model_makes_is_refused(live_key):
    response = V1(live_key).post("/responses", {"model": "demo-chat", "input": "hi", "max_output_tokens": 10**6})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "max_output_tokens"
    assert Hold.objects.count() == 0


def test_bad_input_items_are_refused_naming_the_field(live_key):
    v1 = V1(live_key)
    for body, param in (
        ({"model": "demo-chat", "input": []}, "input"),
        ({"model": "demo-chat", "input": [{"type": "web_search_call"}]}, "input.0"),
        ({"model": "demo-chat", "input": "x", "tools": [{"type": "web_search"}]}, "tools.0.type"),
        ({"model": "demo-chat", "input": "x", "text": {"format": {"type": "json_schema"}}}, "text.format"),
        (
            {"model": "demo-chat", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input.0.message.content.0.input_image",
        ),
    ):
        response = v1.post("/responses", body)
        assert response.status_code == 400, body
        assert response.json()["error"]["param"] == param, response.content
    assert Receipt.objects.count() == 0 and Hold.objects.count() == 0


def test_another_teams_previous_response_is_404_before_any_hold(live_key, other_team, outsider):
    theirs = V1(mint_key(team=other_team, name="x", created_by=outsider).plaintext)
    grant_credit(other_team, amount_nusd=USD, reason="t")
    created = (theirs.post("/responses", {"model": "demo-chat", "input": "secret plans"})).json()
    holds = Hold.objects.count()
    response = V1(live_key).post(
        "/responses", {"model": "demo-chat", "input": "what were they?", "previous_response_id": created["id"]}
    )
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "previous_response_id"
    assert Hold.objects.count() == holds
    for path in (f"/responses/{created['id']}", f"/responses/{created['id']}/input_items"):
        assert (V1(live_key).get(path)).status_code == 404
    deleted = async_to_sync(request)(
        "DELETE", f"/v1/responses/{created['id']}", headers={"Authorization": f"Bearer {live_key}"}
    )
    assert deleted.status_code == 404
    assert StoredResponse.objects.filter(response_id=created["id"]).exists()
    assert (theirs.get(f"/responses/{created['id']}")).json()["id"] == created["id"]


def test_an_idempotent_replay_stores_and_charges_once(live_key):
    v1 = V1(live_key)
    body = {"model": "demo-chat", "input": "once"}
    first = v1.post("/responses", body, headers={"Idempotency-Key": "r-1"})
    replay = v1.post("/responses", body, headers={"Idempotency-Key": "r-1"})
    assert replay["Idempotent-Replayed"] == "true" and replay.content == first.content
    assert Receipt.objects.count() == 1 and StoredResponse.objects.count() == 1


def test_a_test_key_runs_on_the_simulator_and_moves_no_money(test_key, funded_team):
    response = V1(test_key).post("/responses", {"model": "demo-chat", "input": "sandbox"})
    assert response.status_code == 200
    receipt = Receipt.objects.get(public_id=response.json()["usage"]["receipt_id"])
    assert receipt.is_test
    assert Wallet.objects.get(team=funded_team).balance_nusd == 10 * USD
    assert Hold.objects.count() == 0


def test_a_client_that_leaves_mid_stream_pays_for_what_was_produced(live_key, funded_team, settings):
    settings.SIMULATOR_TOKENS_PER_SECOND = 200
    body = {"model": "demo-chat", "input": "Tell me a long story.", "stream": True, "max_output_tokens": 400}
    response = V1(live_key).post("/responses", body, disconnect_after=4)
    assert response.status_code == 200
    receipt = Receipt.objects.get()
    assert receipt.status == "partial" and 0 < receipt.completion_tokens < 400
    assert Hold.objects.get().status == HoldStatus.SETTLED
    assert Wallet.objects.get(team=funded_team).held_nusd == 0
    stored = orjson.loads(StoredResponse.objects.get().response)
    assert stored["status"] == "incomplete" and stored["usage"]["receipt_id"] == receipt.public_id
    assert find_discrepancies() == []


def test_an_upstream_that_breaks_mid_stream_ends_in_response_failed(live_key, upstream):
    model = upstream_model(upstream, "drop-c10")
    response = V1(live_key).post("/responses", {"model": model, "input": "hi", "stream": True})
    got = events(response)
    assert got[0]["type"] == "response.created" and got[-1]["type"] == "response.failed"
    assert got[-1]["response"]["error"]["code"] == "upstream_error"
    assert [e["sequence_number"] for e in got] == list(range(len(got)))
    receipt = Receipt.objects.get()
    assert receipt.status == "partial" and receipt.completion_tokens > 0
    assert find_discrepancies() == []


def test_reasoning_effort_reaches_only_models_that_support_it(live_key, upstream):
    thinking = upstream_model(upstream, "ok", supports_reasoning=True)
    plain = upstream_model(upstream, "ok-c3")
    v1 = V1(live_key)
    body = {"input": "think", "reasoning": {"effort": "high"}, "max_output_tokens": 50}
    answered = (v1.post("/responses", {**body, "model": thinking})).json()
    assert answered["reasoning"]["effort"] == "high"
    sent = upstream.requests[-1].body
    assert sent["reasoning_effort"] == "high" and sent["max_completion_tokens"] == 50 and "max_tokens" not in sent
    answered = (v1.post("/responses", {**body, "model": plain})).json()
    assert answered["reasoning"]["effort"] is None
    sent = upstream.requests[-1].body
    assert "reasoning_effort" not in sent and sent["max_tokens"] == 50


def test_input_items_are_paged_newest_first(live_key):
    v1 = V1(live_key)
    items = [{"role": "user", "content": f"m{i}"} for i in range(5)]
    created = (v1.post("/responses", {"model": "demo-chat", "input": items})).json()
    page = (v1.get(f"/responses/{created['id']}/input_items", limit=2)).json()
    assert [i["content"][0]["text"] for i in page["data"]] == ["m4", "m3"] and page["has_more"]
    rest = (v1.get(f"/responses/{created['id']}/input_items", limit=10, after=page["last_id"])).json()
    assert [i["content"][0]["text"] for i in rest["data"]] == ["m2", "m1", "m0"] and not rest["has_more"]
    bad = v1.get(f"/responses/{created['id']}/input_items", limit=1000)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


def test_the_simulator_reasons_when_asked_and_the_reasoning_is_billed_as_output(v1):
    plain = v1.post("/responses", {"model": "demo-chat", "input": "echo: ok"}).json()
    thought = v1.post(
        "/responses", {"model": "demo-chat", "input": "echo: ok", "reasoning": {"effort": "medium"}}
    ).json()
    assert thought["reasoning"]["effort"] == "medium" and thought["output"][0]["content"][0]["text"] == "ok"
    assert thought["usage"]["output_tokens_details"]["reasoning_tokens"] == 64
    assert thought["usage"]["output_tokens"] == plain["usage"]["output_tokens"] + 64
    receipt = Receipt.objects.get(public_id=thought["usage"]["receipt_id"])
    assert receipt.completion_tokens == thought["usage"]["output_tokens"]


def test_a_response_runs_on_an_anthropic_route_plain_and_streamed(v1, upstream):
    from pathlib import Path

    fixtures = Path(__file__).parent / "fixtures" / "anthropic"
    provider = Provider.objects.create(slug="claude", kind="anthropic", base_url=upstream.root_url)
    model = create_model("claude-r", input_price_nusd=3_000, output_price_nusd=15_000)
    Route.objects.create(model=model, provider=provider, upstream_model="claude-sonnet-4-5")
    catalog.invalidate()
    upstream.script("/v1/messages", (fixtures / "message_tool_use.json").read_bytes())
    body = v1.post(
        "/responses", {"model": "claude-r", "input": "Weather in Paris?", "instructions": "Be brief."}
    ).json()
    sent = upstream.requests[-1].body
    assert sent["system"] == "Be brief." and sent["messages"] == [{"role": "user", "content": "Weather in Paris?"}]
    message, call = body["output"]
    assert message["content"][0]["text"] == "I'll check the weather in Paris."
    assert call["type"] == "function_call" and orjson.loads(call["arguments"]) == {"city": "Paris", "unit": "celsius"}
    assert (body["usage"]["input_tokens"], body["usage"]["output_tokens"]) == (472, 91)
    upstream.script("/v1/messages", (fixtures / "stream_text.sse").read_bytes())
    streamed = events(v1.post("/responses", {"model": "claude-r", "input": "Hi", "stream": True}))
    assert streamed[-1]["type"] == "response.incomplete"  # the recorded stream stopped at max_tokens
    assert streamed[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    text = "".join(e["delta"] for e in streamed if e["type"] == "response.output_text.delta")
    assert text and streamed[-1]["response"]["output"][0]["content"][0]["text"] == text
    assert find_discrepancies() == []
