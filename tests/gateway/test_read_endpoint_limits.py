"""Every /v1 endpoint, not only the inference POSTs, counts against the key's requests per minute and says so."""

from __future__ import annotations

import pytest
import time_machine

from accounts.keys import mint_key
from tests.gateway.conftest import V1, chat

pytestmark = pytest.mark.django_db

HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)


def reads(v1: V1) -> dict[str, object]:
    """One call to each endpoint that is not an inference POST (path → response)."""
    completion = v1.post("/chat/completions", chat())
    receipt_id = completion.json()["usage"]["receipt_id"]
    return {
        "/models": v1.get("/models"),
        "/models/demo-chat": v1.get("/models/demo-chat"),
        "/providers": v1.get("/providers", model="demo-chat"),
        "/key": v1.get("/key"),
        "/balance": v1.get("/balance"),
        "/receipts": v1.get("/receipts"),
        "/receipts/{id}": v1.get(f"/receipts/{receipt_id}"),
        "/chat/completions/{id}": v1.get(f"/chat/completions/{completion.json()['id']}"),
        "/chat/completions/estimate": v1.post("/chat/completions/estimate", chat()),
        "/embeddings/estimate": v1.post("/embeddings/estimate", {"model": "demo-embed", "input": "hi"}),
    }


@time_machine.travel("2026-01-01 12:00:05", tick=False)
def test_each_read_counts_one_request_and_carries_the_rate_limit_headers(v1):
    responses = reads(v1)
    remaining = []
    for path, response in responses.items():
        assert response.status_code == 200, (path, response.content)
        assert all(response.has_header(name) for name in HEADERS), path
        assert response["x-ratelimit-limit-requests"] == "60", path  # the starter plan
        assert response["x-ratelimit-reset-requests"] == "55s", path
        assert response["X-Request-Id"].startswith("req_"), path
        remaining.append(int(response["x-ratelimit-remaining-requests"]))
    # the chat completion took one, then every read one more; reads cost no tokens
    assert remaining == list(range(58, 58 - len(responses), -1))
    assert len({responses[p]["x-ratelimit-remaining-tokens"] for p in ("/models", "/key", "/balance")}) == 1


@time_machine.travel("2026-01-01 12:00:05", tick=False)
@pytest.mark.parametrize("path", ["/models", "/key", "/balance", "/receipts", "/chat/completions/chatcmpl-x"])
def test_a_read_at_the_requests_per_minute_limit_gets_429_with_retry_after(client, funded_team, owner, seeded, path):
    limited = V1(mint_key(team=funded_team, name="slow", created_by=owner, rpm_limit=2).plaintext)
    assert limited.get("/models").status_code == 200
    assert limited.post("/chat/completions", chat()).status_code == 200  # inference shares the window
    response = limited.get(path)
    assert response.status_code == 429
    body = response.json()
    assert body["error"]["code"] == "rate_limit_exceeded" and body["error"]["type"] == "rate_limit_error"
    assert body["request_id"] == response["X-Request-Id"]
    assert response["Retry-After"] == "55"
    assert response["x-ratelimit-limit-requests"] == "2"
    assert response["x-ratelimit-remaining-requests"] == "0"


def test_a_refused_key_is_answered_by_the_endpoint_and_not_counted(client, v1):
    response = V1("tg_live_not-a-real-key").get("/balance")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert not response.has_header("x-ratelimit-limit-requests")
    assert v1.get("/models")["x-ratelimit-remaining-requests"] == "59"


def test_the_openapi_document_needs_no_key_and_is_not_limited(client):
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200
    assert not response.has_header("x-ratelimit-limit-requests")


def test_the_openapi_document_describes_every_v1_endpoint_with_its_shapes(client):
    spec = client.get("/v1/openapi.json").json()
    operations = {(method.upper(), path): op for path, ops in spec["paths"].items() for method, op in ops.items()}
    assert {
        ("GET", "/v1/models"),
        ("GET", "/v1/models/{model_id}"),
        ("GET", "/v1/providers"),
        ("GET", "/v1/key"),
        ("GET", "/v1/balance"),
        ("GET", "/v1/receipts"),
        ("GET", "/v1/receipts/{receipt_id}"),
        ("GET", "/v1/chat/completions/{completion_id}"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/completions"),
        ("POST", "/v1/embeddings"),
        ("POST", "/v1/chat/completions/estimate"),
        ("POST", "/v1/embeddings/estimate"),
        ("POST", "/v1/images/generations"),
        ("POST", "/v1/images/generations/estimate"),
        ("POST", "/v1/images"),
        ("POST", "/v1/images/estimate"),
        ("GET", "/v1/images"),
        ("GET", "/v1/images/{image_id}"),
        ("POST", "/v1/images/{image_id}/cancel"),
    } <= set(operations)
    for (method, path), op in operations.items():
        success = op["responses"].get("200") or op["responses"]["202"]  # 202: an image job, queued
        assert "content" in success, (method, path)
        if method == "POST" and not path.endswith("/cancel"):  # a cancel has no body
            assert "content" in op["requestBody"], path
    chat = operations[("POST", "/v1/chat/completions")]["responses"]
    assert chat["429"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
