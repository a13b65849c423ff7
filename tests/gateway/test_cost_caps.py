"""Per-request cost caps (Tollgate-Max-Cost / max_cost_usd / a key's default) through the production ASGI app: the
hold never exceeds the cap, max tokens shrink to what it affords, streams are cut before they pass it, and no
receipt is ever above it by a single nano-dollar."""

from __future__ import annotations

import orjson
import pytest

from accounts.keys import mint_key
from billing import pricing
from billing.models import Hold, Receipt, Wallet
from gateway import catalog
from gateway.models import Provider, Route
from gateway.price_book import create_model
from gateway.tokens import count_tokens
from tests.asgi import V1
from tests.gateway.conftest import USD, chat

pytestmark = pytest.mark.django_db

IN, OUT = 1_000, 2_000  # nusd per token of the models on the misbehaving upstream


def verbose_model(upstream, words: int = 300, delay_ms: int = 0) -> str:
    """A model on the misbehaving upstream, which answers `words` words whatever max_tokens says (streams one word
    every `delay_ms`)."""
    provider, _ = Provider.objects.get_or_create(
        slug="verbose", defaults={"kind": "openai", "base_url": upstream.base_url, "timeout_seconds": 5}
    )
    public_id = f"ok-c{words}" + (f"-d{delay_ms}" if delay_ms else "")
    model = create_model(public_id, input_price_nusd=IN, output_price_nusd=OUT, max_output_tokens=4_096)
    Route.objects.create(model=model, provider=provider, upstream_model=public_id)
    catalog.invalidate()
    return public_id


def receipt_of(response) -> Receipt:
    return Receipt.objects.get(request_id=response["X-Request-Id"])


def data(frames) -> list[dict]:
    return [orjson.loads(f.removeprefix(b"data: ")) for f in frames if f.startswith(b"data: {")]


# --- the hold and max tokens -------------------------------------------------------------------------------


def test_a_header_cap_shrinks_max_tokens_to_what_it_affords_and_the_receipt_stays_below(v1, upstream):
    model = verbose_model(upstream, words=5)
    cap = 100_000  # $0.0001
    response = v1.post(
        "/chat/completions", chat(model=model, max_tokens=1_000), headers={"Tollgate-Max-Cost": "0.0001"}
    )
    assert response.status_code == 200, response.content
    receipt = receipt_of(response)
    sent = upstream.requests[-1].body
    prompt = receipt.hold_amount_nusd - sent["max_tokens"] * OUT
    assert 0 < sent["max_tokens"] < 1_000  # what the cap affords after the prompt, not what was asked
    assert receipt.hold_amount_nusd <= cap < receipt.hold_amount_nusd + OUT  # one more token would not fit
    assert prompt == receipt.hold_amount_nusd - sent["max_tokens"] * OUT
    assert receipt.max_cost_nusd == cap and receipt.total_cost_nusd <= cap
    assert "max_cost_usd" not in sent


def test_the_body_field_is_taken_out_before_the_upstream_and_the_stricter_cap_wins(v1, upstream):
    model = verbose_model(upstream, words=5)
    response = v1.post(
        "/chat/completions",
        chat(model=model, max_tokens=1_000, max_cost_usd="0.00005"),
        headers={"Tollgate-Max-Cost": "0.0001"},
    )
    assert response.status_code == 200, response.content
    assert "max_cost_usd" not in upstream.requests[-1].body
    receipt = receipt_of(response)
    assert receipt.max_cost_nusd == 50_000 and receipt.hold_amount_nusd <= 50_000


def test_a_cap_the_request_already_fits_changes_nothing(v1, upstream):
    model = verbose_model(upstream, words=5)
    response = v1.post("/chat/completions", chat(model=model, max_tokens=10, max_cost_usd=5))
    assert response.status_code == 200
    assert upstream.requests[-1].body["max_tokens"] == 10
    assert receipt_of(response).max_cost_nusd == 5 * USD


@pytest.mark.parametrize("where", ["header", "body"])
def test_a_cap_below_the_prompt_is_400_max_cost_too_low_and_nothing_is_held(v1, funded_team, where):
    body = chat(max_tokens=10)
    headers = {}
    if where == "header":
        headers["Tollgate-Max-Cost"] = "0.000000001"
    else:
        body["max_cost_usd"] = 0.000000001
    response = v1.post("/chat/completions", body, headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "max_cost_too_low" and "prompt" in error["message"]
    assert not Hold.objects.exists() and not Receipt.objects.exists()
    assert Wallet.objects.get(team=funded_team).held_nusd == 0


@pytest.mark.parametrize(
    ("headers", "extra", "param"),
    [
        ({"Tollgate-Max-Cost": "abc"}, {}, "Tollgate-Max-Cost"),
        ({"Tollgate-Max-Cost": "-1"}, {}, "Tollgate-Max-Cost"),
        ({"Tollgate-Max-Cost": "0"}, {}, "Tollgate-Max-Cost"),
        ({"Tollgate-Max-Cost": "NaN"}, {}, "Tollgate-Max-Cost"),
        ({}, {"max_cost_usd": "0.0000000001"}, "max_cost_usd"),
        ({}, {"max_cost_usd": True}, "max_cost_usd"),
        ({}, {"max_cost_usd": [1]}, "max_cost_usd"),
        ({}, {"max_cost_usd": 10**12}, "max_cost_usd"),
    ],
)
def test_a_bad_cap_is_a_400_naming_it_and_changes_nothing(v1, headers, extra, param):
    response = v1.post("/chat/completions", chat(**extra), headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert not Hold.objects.exists() and not Receipt.objects.exists()


def test_the_estimate_shows_the_budget_the_cap_leaves(v1):
    response = v1.post("/chat/completions/estimate", chat(max_tokens=8_000, max_cost_usd="0.001"))
    body = response.json()
    assert response.status_code == 200
    assert body["max_completion_tokens"] < 8_000
    assert pricing.usd_to_nusd(str(body["hold_usd"])) <= USD // 1_000


def test_a_keys_default_cap_applies_when_the_request_sends_none(funded_team, owner, seeded, upstream):
    model = verbose_model(upstream, words=5)
    key = V1(mint_key(team=funded_team, name="capped", created_by=owner, max_cost_per_request_nusd=60_000).plaintext)
    first = key.post("/chat/completions", chat(model=model, max_tokens=1_000))
    assert receipt_of(first).max_cost_nusd == 60_000 and receipt_of(first).hold_amount_nusd <= 60_000
    own = key.post("/chat/completions", chat(model=model, max_tokens=1_000), headers={"Tollgate-Max-Cost": "0.0002"})
    assert receipt_of(own).max_cost_nusd == 200_000  # the request's own cap replaces the key's default


def test_a_test_key_is_held_to_its_cap_too(test_key):
    response = V1(test_key).post(
        "/chat/completions", chat(max_tokens=4_000, messages=[{"role": "user", "content": "Tell me a long story."}])
    )
    uncapped = receipt_of(response)
    capped = V1(test_key).post(
        "/chat/completions",
        chat(max_tokens=4_000, messages=[{"role": "user", "content": "Tell me a long story."}]),
        headers={"Tollgate-Max-Cost": "0.00002"},
    )
    receipt = receipt_of(capped)
    assert receipt.is_test and receipt.max_cost_nusd == 20_000
    assert receipt.total_cost_nusd <= 20_000 < uncapped.hold_amount_nusd


def test_images_are_refused_not_clamped_when_they_cost_more_than_the_cap(v1):
    refused = v1.post("/images/generations", {"model": "demo-image", "prompt": "x", "n": 2, "max_cost_usd": "0.05"})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "max_cost_too_low" and "2 image(s)" in refused.json()["error"]["message"]
    fits = v1.post("/images/generations", {"model": "demo-image", "prompt": "x", "n": 1, "max_cost_usd": "0.05"})
    assert fits.status_code == 200, fits.content
    receipt = receipt_of(fits)
    assert receipt.total_cost_nusd == 40_000_000 <= receipt.max_cost_nusd == 50_000_000


def test_an_embedding_whose_input_costs_more_than_the_cap_is_refused(v1):
    response = v1.post(
        "/embeddings", {"model": "demo-embed", "input": "a " * 400}, headers={"Tollgate-Max-Cost": "0.000000020"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "max_cost_too_low"


def test_a_plain_answer_longer_than_max_tokens_is_charged_no_more_than_the_cap(v1, upstream):
    model = verbose_model(upstream, words=300)  # ignores max_tokens: 300 words, usage says 300 tokens
    response = v1.post(
        "/chat/completions", chat(model=model, max_tokens=1_000), headers={"Tollgate-Max-Cost": "0.0001"}
    )
    receipt = receipt_of(response)
    assert receipt.total_cost_nusd == receipt.hold_amount_nusd <= 100_000  # clamped to the hold, within the cap
    assert response.json()["usage"]["total_cost_usd"] <= 0.0001


# --- streams -----------------------------------------------------------------------------------------------


def _cut_stream(v1, path: str, body: dict, cap_usd: str):
    response = v1.post(path, body, headers={"Tollgate-Max-Cost": cap_usd})
    assert response.status_code == 200, response.content
    return response, receipt_of(response)


def test_a_stream_is_cut_with_finish_reason_length_before_it_passes_the_cap(v1, upstream):
    model = verbose_model(upstream, words=300, delay_ms=5)
    response, receipt = _cut_stream(
        v1,
        "/chat/completions",
        chat(model=model, max_tokens=1_000, stream=True, stream_options={"include_usage": True}),
        "0.0001",
    )
    chunks = data(response.events())
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    finishes = [
        c["choices"][0]["finish_reason"] for c in chunks if c.get("choices") and c["choices"][0].get("finish_reason")
    ]
    assert finishes == ["length"]
    assert response.events()[-1] == b"data: [DONE]"
    assert 0 < len(text.split()) < 300  # cut, not the whole answer
    # exactly what was delivered, as counted, never a nano-dollar above the hold (and so the cap)
    assert receipt.completion_tokens == count_tokens(text)
    assert receipt.total_cost_nusd == receipt.prompt_tokens * IN + receipt.completion_tokens * OUT
    assert receipt.total_cost_nusd <= receipt.hold_amount_nusd <= 100_000
    # the next word would have passed it
    assert (
        receipt.prompt_tokens * IN + count_tokens(text + f"word{len(text.split())} ") * OUT > receipt.hold_amount_nusd
    )
    assert receipt.status == "succeeded" and chunks[-1]["usage"]["total_cost_usd"] <= 0.0001
    assert upstream.wait_for_disconnect()  # upstream was closed, not read to the end


def test_a_cut_responses_stream_ends_incomplete_at_max_output_tokens(v1, upstream):
    model = verbose_model(upstream, words=300)
    response, receipt = _cut_stream(
        v1, "/responses", {"model": model, "input": "hi", "stream": True, "max_output_tokens": 1_000}, "0.0001"
    )
    events = [orjson.loads(f.split(b"data: ", 1)[1]) for f in response.events()]
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert receipt.total_cost_nusd <= receipt.hold_amount_nusd <= 100_000


def test_a_cut_messages_stream_stops_with_max_tokens(v1, upstream):
    model = verbose_model(upstream, words=300)
    response, receipt = _cut_stream(
        v1,
        "/messages",
        {"model": model, "max_tokens": 1_000, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        "0.0001",
    )
    events = [orjson.loads(f.split(b"data: ", 1)[1]) for f in response.events()]
    delta = next(e for e in events if e["type"] == "message_delta")
    assert delta["delta"]["stop_reason"] == "max_tokens" and events[-1]["type"] == "message_stop"
    assert receipt.total_cost_nusd <= receipt.hold_amount_nusd <= 100_000


def test_a_stream_within_its_cap_runs_to_its_end(v1, upstream):
    model = verbose_model(upstream, words=5)
    response, receipt = _cut_stream(v1, "/chat/completions", chat(model=model, max_tokens=1_000, stream=True), "0.01")
    finishes = [c["choices"][0]["finish_reason"] for c in data(response.events()) if c.get("choices")]
    assert finishes[-1] == "stop" and receipt.completion_tokens == 5


def test_the_openapi_document_names_the_cost_cap_header(v1):
    from django.test import Client

    paths = Client().get("/v1/openapi.json").json()["paths"]
    for path in ("/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/images/generations"):
        assert [p["name"] for p in paths[path]["post"]["parameters"]] == ["Tollgate-Max-Cost"]
