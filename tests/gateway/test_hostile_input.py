"""Input built to break things gets a clear 4xx in the envelope, or is served safely, and changes nothing it
should not (reliability defects 4, 8 and 9), through the production ASGI application."""

from __future__ import annotations

import json

import orjson
import pytest

from billing.models import Hold, HoldStatus, Receipt
from gateway.models import IdempotencyRecord, IdempotencyStatus, StoredCompletion
from gateway.schemas import MAX_JSON_DEPTH
from tests.gateway.conftest import chat


def nested(depth: int) -> dict:
    value: dict = {"type": "string"}
    for _ in range(depth):
        value = {"type": "object", "properties": {"a": value}}
    return value


def test_nul_characters_in_a_stored_completion_are_kept_safely(v1):
    """Defect 4: `store: true` with NUL in a message or metadata answered 500 after the upstream call, left
    the hold open and the Idempotency-Key in flight for 24 h."""
    body = chat(
        store=True, metadata={"note": "a\u0000b"}, messages=[{"role": "user", "content": "echo: zero\u0000byte"}]
    )
    response = v1.post("/chat/completions", body, headers={"Idempotency-Key": "nul-1"})
    assert response.status_code == 200, response.content
    assert response.json()["choices"][0]["message"]["content"] == "zero\u0000byte"
    stored = StoredCompletion.objects.get(completion_id=response.json()["id"])
    assert orjson.loads(stored.request)["messages"][0]["content"] == "echo: zero\u0000byte"
    assert orjson.loads(stored.metadata) == {"note": "a\u0000b"}
    assert IdempotencyRecord.objects.get(key="nul-1").status == IdempotencyStatus.DONE
    assert Hold.objects.get().status == HoldStatus.SETTLED
    retrieved = v1.get(f"/chat/completions/{response.json()['id']}")
    assert retrieved.json()["choices"][0]["message"]["content"] == "zero\u0000byte"


def test_a_result_the_database_refuses_is_settled_without_keeping_it(v1, monkeypatch):
    """Whatever the persist step hits, the request is paid once, its hold ends and its key is released."""
    from gateway.operations.chat import ChatCompletions

    def refuse(self, call, receipt, body):
        raise ValueError("refused by the database")

    monkeypatch.setattr(ChatCompletions, "persist", refuse)
    response = v1.post("/chat/completions", chat(store=True), headers={"Idempotency-Key": "refused-1"})
    assert response.status_code == 200
    receipt = Receipt.objects.get()
    assert receipt.public_id == response.json()["usage"]["receipt_id"] and receipt.total_cost_nusd > 0
    assert Hold.objects.get().status == HoldStatus.SETTLED
    assert not IdempotencyRecord.objects.exists()  # released: the client may retry with the key
    assert not StoredCompletion.objects.exists()


@pytest.mark.parametrize("field", ["tools", "response_format"])
def test_json_nested_too_deep_is_a_400_naming_the_field(v1, field):
    """Defect 8: 260 levels in a tool's parameters or a json_schema was a 500 (orjson's recursion limit)."""
    if field == "tools":
        extra = {"tools": [{"type": "function", "function": {"name": "f", "parameters": nested(260)}}]}
        param = "tools.0.function.parameters"
    else:
        extra = {"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": nested(260)}}}
        param = "response_format.json_schema.schema.properties"
    response = v1.post("/chat/completions", json.dumps(chat(**extra)).encode())  # orjson cannot write it
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and str(MAX_JSON_DEPTH) in error["message"]
    assert not Hold.objects.exists() and not Receipt.objects.exists()


def test_json_just_within_the_depth_limit_is_served(v1):
    tools = [{"type": "function", "function": {"name": "f", "parameters": nested(40)}}]
    assert v1.post("/chat/completions", chat(tools=tools, model="demo-chat")).status_code == 200


@pytest.mark.parametrize("path", ["/chat/completions", "/chat/completions/estimate", "/embeddings/estimate"])
def test_every_v1_path_has_the_same_body_limit_and_envelope(v1, settings, path):
    """Defect 9: the estimates refused bodies over 2.5 MiB with Django's HTML 400."""
    settings.GATEWAY_MAX_BODY_BYTES = 4 * 1024 * 1024
    big = "word " * (600_000)  # 3 MiB: over Django's default, under the gateway's limit
    body = (
        chat(messages=[{"role": "user", "content": big}]) if "chat" in path else {"model": "demo-embed", "input": big}
    )
    response = v1.post(path, body)
    assert response.status_code in (200, 400), response.content[:300]  # served (or refused for its length)
    assert response["Content-Type"] == "application/json"
    if response.status_code == 400:
        assert response.json()["error"]["code"] == "context_length_exceeded"
    huge = v1.post(path, b"{" + b" " * (5 * 1024 * 1024) + b"}")
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "request_too_large"
    assert not Hold.objects.filter(status=HoldStatus.OPEN).exists()


def test_an_idempotency_key_with_control_characters_is_refused_before_the_hold(v1):
    response = v1.post("/chat/completions", chat(), headers={"Idempotency-Key": "a\tb"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "Idempotency-Key"
    assert not Hold.objects.exists()
