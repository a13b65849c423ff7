"""POST /v1/chat/completions through the shared service path (ninja routes, Django test client)."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from billing.models import Hold, LedgerEntry, Receipt, Wallet
from billing.reconcile import find_discrepancies
from tests.gateway.conftest import USD, V1, chat

pytestmark = pytest.mark.django_db


def test_it_answers_a_chat_completion_with_the_usage_block_and_routing(v1):
    response = v1.post("/chat/completions", chat())
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "demo-chat"
    assert body["choices"][0]["message"]["role"] == "assistant"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}
    assert usage["receipt_id"].startswith("rcpt_")
    assert body["routing"] == {"routed_to": "demo-chat", "provider": "simulator", "attempts": 1}
    assert response["X-Request-Id"].startswith("req_")


def test_the_receipt_and_the_response_agree_to_the_nano_dollar(v1, funded_team):
    response = v1.post("/chat/completions", chat())
    body = orjson.loads(response.content)
    text = response.content.decode()
    usage = body["usage"]
    receipt = Receipt.objects.get(public_id=usage["receipt_id"])
    assert receipt.request_id == response["X-Request-Id"]
    assert receipt.prompt_tokens + receipt.cached_tokens == usage["prompt_tokens"]
    assert receipt.completion_tokens == usage["completion_tokens"]
    # costs are exact JSON numbers: compare the digits written, not floats
    for field, nusd in (
        ("input_cost_usd", receipt.input_cost_nusd),
        ("output_cost_usd", receipt.output_cost_nusd),
        ("total_cost_usd", receipt.total_cost_nusd),
    ):
        written = text.split(f'"{field}":', 1)[1].split(",", 1)[0]
        assert Decimal(written) * USD == nusd
    assert receipt.total_cost_nusd > 0
    wallet = Wallet.objects.get(team=funded_team)
    assert wallet.balance_nusd == 10 * USD - receipt.total_cost_nusd
    assert wallet.held_nusd == 0
    assert find_discrepancies() == []


def test_a_test_key_runs_on_the_simulator_and_moves_no_money(client, test_key, funded_team):
    response = V1(test_key).post("/chat/completions", chat())
    assert response.status_code == 200
    receipt = Receipt.objects.get(public_id=response.json()["usage"]["receipt_id"])
    assert receipt.is_test
    assert Wallet.objects.get(team=funded_team).balance_nusd == 10 * USD
    assert not Hold.objects.exists()
    assert not LedgerEntry.objects.filter(kind="charge").exists()


def test_one_plain_request_makes_only_the_hold_and_settlement_queries(v1, django_assert_max_num_queries):
    from django.db import connection

    v1.post("/chat/completions", chat())  # warms the key, catalog and team caches
    if connection.vendor == "postgresql":
        # billing/backends/postgres.py: the hold is one statement (UPDATE wallet + INSERT hold as CTEs), the
        # settlement another (its rows as JSON; lock wallet, close hold, move held and balance, INSERT receipt and
        # ledger entry).
        with django_assert_max_num_queries(2) as captured:
            response = v1.post("/chat/completions", chat())
        assert response.status_code == 200
        statements = [q["sql"] for q in captured.captured_queries]
        assert [s.split(" AS (")[0] for s in statements] == ["WITH w", "WITH s"], statements
        return
    # hold: UPDATE wallet + INSERT hold; settle: UPDATE hold, SELECT wallet FOR UPDATE, UPDATE wallet, INSERT
    # receipt, INSERT ledger entry. Each transaction is a savepoint inside the test's transaction (+2 statements each).
    with django_assert_max_num_queries(11) as captured:
        response = v1.post("/chat/completions", chat())
    assert response.status_code == 200
    statements = [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) == 7, statements


def test_it_refuses_a_missing_key_before_looking_at_the_body(client, seeded):
    response = V1(None).post("/chat/completions", b"not json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(temperature=3), "temperature"),
        (chat(top_p=1.5), "top_p"),
        (chat(max_tokens=0), "max_tokens"),
        ({"model": "demo-chat", "messages": []}, "messages"),
        ({"model": "demo-chat", "messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        (chat(response_format={"type": "json_schema"}), "response_format"),
        (chat(stop=["a", "b", "c", "d", "e"]), "stop"),
        (chat(max_tokens=100_000), "max_tokens"),
    ],
)
def test_validation_errors_name_the_parameter(v1, body, param):
    response = v1.post("/chat/completions", body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert Hold.objects.count() == 0


def test_an_unknown_model_is_404_model_not_found(v1):
    response = v1.post("/chat/completions", chat(model="gpt-nonexistent"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_a_key_limited_to_other_models_gets_403_model_not_allowed(client, funded_team, owner, seeded):
    from accounts.keys import mint_key

    key = mint_key(team=funded_team, name="mini only", created_by=owner, allowed_models=["demo-chat-mini"]).plaintext
    response = V1(key).post("/chat/completions", chat())
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "model_not_allowed"
    assert V1(key).post("/chat/completions", chat(model="demo-chat-mini")).status_code == 200


def test_without_credit_it_is_402_and_upstream_is_not_called(client, team, owner, seeded):
    from accounts.keys import mint_key

    key = mint_key(team=team, name="broke", created_by=owner).plaintext
    response = V1(key).post("/chat/completions", chat())
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_balance"
    assert not Receipt.objects.exists()


def test_a_disabled_route_set_makes_the_model_unavailable(v1):
    from gateway.models import Route

    Route.objects.filter(model__public_id="demo-chat").update(enabled=False)
    response = v1.post("/chat/completions", chat())
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "model_unavailable"


def test_thaura_attachments_become_content_parts(v1):
    import base64

    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 32).decode()
    note = base64.b64encode(b"meeting notes").decode()
    response = v1.post(
        "/chat/completions", chat(attachments=[png, {"data": note, "mime_type": "text/plain", "name": "notes.txt"}])
    )
    assert response.status_code == 200, response.content


def test_auto_picks_the_cheapest_model_that_supports_the_request(v1):
    plain = v1.post("/chat/completions", chat(model="auto")).json()
    assert plain["routing"]["routed_to"] == "demo-chat-mini"
    image = {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ],
    }
    vision = v1.post("/chat/completions", {"model": "auto", "messages": [image], "max_tokens": 8}).json()
    assert vision["routing"]["routed_to"] == "demo-chat"


def test_tools_produce_tool_calls(v1):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    body = v1.post("/chat/completions", chat(tools=tools, tool_choice="required")).json()
    call = body["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert "city" in orjson.loads(call["function"]["arguments"])
