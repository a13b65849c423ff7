"""Embeddings, legacy completions, models, providers, estimates and stored completions."""

from __future__ import annotations

import base64
import struct

import pytest

from billing.models import Hold, Receipt, Wallet
from tests.gateway.conftest import USD, V1, chat

pytestmark = pytest.mark.django_db


def test_embeddings_for_one_string_and_a_batch(v1):
    one = v1.post("/embeddings", {"model": "demo-embed", "input": "hello world", "dimensions": 8}).json()
    assert one["object"] == "list" and len(one["data"]) == 1
    assert len(one["data"][0]["embedding"]) == 8
    batch = v1.post("/embeddings", {"model": "demo-embed", "input": ["a", "b", "c"]}).json()
    assert [d["index"] for d in batch["data"]] == [0, 1, 2]
    assert batch["usage"]["receipt_id"].startswith("rcpt_")
    assert "completion_tokens" not in batch["usage"]


def test_base64_embeddings_decode_to_the_same_vector_as_floats(v1):
    floats = v1.post("/embeddings", {"model": "demo-embed", "input": "same", "dimensions": 4}).json()
    encoded = v1.post(
        "/embeddings", {"model": "demo-embed", "input": "same", "dimensions": 4, "encoding_format": "base64"}
    ).json()
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    decoded = struct.unpack("<4f", raw)
    assert decoded == pytest.approx(floats["data"][0]["embedding"], rel=1e-6)


def test_a_chat_model_is_not_an_embedding_model(v1):
    response = v1.post("/embeddings", {"model": "demo-chat", "input": "x"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_an_empty_embedding_input_names_the_parameter(v1):
    response = v1.post("/embeddings", {"model": "demo-embed", "input": []})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input"


def test_legacy_completions(v1):
    body = v1.post("/completions", {"model": "demo-chat", "prompt": "Once upon a time", "max_tokens": 5}).json()
    assert body["object"] == "text_completion"
    assert body["id"].startswith("cmpl-")
    assert body["choices"][0]["text"]
    assert body["usage"]["completion_tokens"] <= 5


def test_models_list_and_one_model_with_pricing_per_million(v1):
    models = v1.get("/models").json()
    assert {m["id"] for m in models["data"]} >= {"demo-chat", "demo-chat-mini", "demo-embed"}
    one = v1.get("/models/demo-chat").json()
    assert one["pricing"]["input"] == "0.5" and one["pricing"]["output"] == "1.5"
    assert one["context_length"] == 128_000
    assert v1.get("/models/nope").status_code == 404


def test_models_need_the_models_read_scope(client, funded_team, owner, seeded):
    from accounts.keys import mint_key

    key = mint_key(team=funded_team, name="inference only", created_by=owner, scopes=["inference"]).plaintext
    response = V1(key).get("/models")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_scope"


def test_providers_lists_a_models_routes(v1):
    body = v1.get("/providers", model="demo-chat").json()
    assert body["data"] == [{"id": "simulator", "type": "primary", "enabled": True, "upstream_model": "demo-chat"}]


def test_an_estimate_prices_the_hold_without_charging(v1, funded_team):
    body = v1.post("/chat/completions/estimate", chat(max_tokens=100)).json()
    assert body["max_completion_tokens"] == 100
    assert body["prompt_tokens"] > 0
    assert body["hold_usd"] == body["max_total_cost_usd"] > 0
    emb = v1.post("/embeddings/estimate", {"model": "demo-embed", "input": ["a b c"]}).json()
    assert emb["max_completion_tokens"] == 0
    assert not Hold.objects.exists() and not Receipt.objects.exists()
    assert Wallet.objects.get(team=funded_team).balance_nusd == 10 * USD


def test_a_stored_completion_can_be_fetched_and_an_unstored_one_shows_metadata(v1, client, outsider):
    stored = v1.post("/chat/completions", chat(store=True, metadata={"topic": "greeting"})).json()
    fetched = v1.get(f"/chat/completions/{stored['id']}").json()
    assert fetched["stored"] is True
    assert fetched["choices"] == stored["choices"]
    assert fetched["usage"]["total_cost_usd"] == stored["usage"]["total_cost_usd"]

    plain = v1.post("/chat/completions", chat()).json()
    meta = v1.get(f"/chat/completions/{plain['id']}").json()
    assert meta["stored"] is False
    assert meta["choices"] == []
    assert meta["usage"]["receipt_id"] == plain["usage"]["receipt_id"]


def test_another_team_cannot_fetch_our_completion(v1, client, other_team, outsider):
    from accounts.keys import mint_key

    stored = v1.post("/chat/completions", chat(store=True)).json()
    theirs = mint_key(team=other_team, name="evil", created_by=outsider).plaintext
    response = V1(theirs).get(f"/chat/completions/{stored['id']}")
    assert response.status_code == 404


def test_the_team_setting_stores_every_completion(v1, funded_team):
    funded_team.store_completions = True
    funded_team.save()
    plain = v1.post("/chat/completions", chat()).json()
    assert v1.get(f"/chat/completions/{plain['id']}").json()["stored"] is True


def test_openapi_describes_every_endpoint(client):
    spec = client.get("/v1/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
        "/v1/models/{model_id}",
        "/v1/providers",
        "/v1/chat/completions/{completion_id}",
        "/v1/chat/completions/estimate",
        "/v1/embeddings/estimate",
        "/v1/responses",
        "/v1/responses/estimate",
        "/v1/responses/{response_id}",
        "/v1/responses/{response_id}/input_items",
        "/v1/messages",
        "/v1/messages/count_tokens",
    ):
        assert path in paths, path
    assert set(paths["/v1/responses/{response_id}"]) == {"get", "delete"}
    assert "AnthropicErrorOut" in str(paths["/v1/messages"]["post"]["responses"]["401"])
    assert "CountTokensRequest" in str(paths["/v1/messages/count_tokens"]["post"]["requestBody"])
    chat_schema = str(paths["/v1/chat/completions"]["post"])
    assert "ChatCompletionRequest" in chat_schema
