"""Test scenarios (gateway/scenarios.py): a test key with `Tollgate-Test-Scenario` (or a `@scenario=` model suffix)
meets a failing world through the real pipeline stages, with the status, envelope, headers and receipt a real
failure has. Live keys ignore the header."""

from __future__ import annotations

import time

import orjson
import pytest

from accounts.keys import mint_key
from billing.models import Hold, LedgerEntry, Receipt, Wallet
from billing.reconcile import find_discrepancies
from gateway.providers import simulator
from gateway.tokens import count_tokens
from tests.gateway.conftest import USD, V1, chat

pytestmark = pytest.mark.django_db

HEADER = "Tollgate-Test-Scenario"


@pytest.fixture(autouse=True)
def _short_timeout(monkeypatch):
    monkeypatch.setattr(simulator, "SCENARIO_TIMEOUT_SECONDS", 0.2)


def scenario(name: str) -> dict[str, str]:
    return {HEADER: name}


def stream_body(**extra) -> dict:
    return chat(**{"stream": True, "stream_options": {"include_usage": True}, "max_tokens": 40, **extra})


def data_frames(response) -> list[dict | str]:
    out: list[dict | str] = []
    for frame in response.events():
        if frame.startswith(b"data: "):
            payload = frame[len(b"data: ") :]
            out.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return out


def assert_no_money_moved(team) -> None:
    wallet = Wallet.objects.get(team=team)
    assert (wallet.balance_nusd, wallet.held_nusd) == (10 * USD, 0)
    assert not Hold.objects.exists()
    assert not LedgerEntry.objects.filter(kind="charge").exists()
    assert find_discrepancies() == []


# --- refusals before the upstream call: the builders a real refusal uses, nothing written ----------------------


def test_insufficient_balance_is_the_402_a_short_wallet_gives_and_writes_nothing(test_key, funded_team, outsider):
    response = V1(test_key).post("/chat/completions", chat(), scenario("insufficient_balance"))
    assert response.status_code == 402, response.content
    body = response.json()
    assert body["error"]["code"] == "insufficient_balance"
    assert body["error"]["type"] == "insufficient_balance"
    assert "available credit does not cover this request" in body["error"]["message"]
    assert body["request_id"] == response["X-Request-Id"]
    assert not Receipt.objects.exists()
    assert_no_money_moved(funded_team)

    # the same envelope as a real refusal: a live key of a team with no credit (the outsider's)
    broke = mint_key(team=outsider.memberships.get().team, name="broke").plaintext
    real = V1(broke).post("/chat/completions", chat())
    assert real.status_code == 402
    assert {k: v for k, v in real.json()["error"].items() if k != "message"} == {
        k: v for k, v in body["error"].items() if k != "message"
    }


def test_rate_limited_is_a_429_with_retry_after_and_the_limit_headers_and_counts_nothing(test_key, funded_team):
    response = V1(test_key).post("/chat/completions", chat(), scenario("rate_limited"))
    assert response.status_code == 429, response.content
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response["x-ratelimit-limit-requests"] == "60"  # the starter plan's
    assert response["x-ratelimit-remaining-requests"] == "0"
    assert response["x-ratelimit-reset-requests"].endswith("s")
    assert "x-ratelimit-limit-tokens" in response
    assert not Receipt.objects.exists()
    # a refused request counts nothing: the next real one is the window's first
    normal = V1(test_key).post("/chat/completions", chat())
    assert normal.status_code == 200
    assert normal["x-ratelimit-remaining-requests"] == "59"
    assert_no_money_moved(funded_team)


def test_rate_limited_names_the_keys_own_stricter_limit(funded_team, owner, seeded):
    strict = mint_key(team=funded_team, name="strict", mode="test", rpm_limit=5, created_by=owner).plaintext
    response = V1(strict).post("/chat/completions", chat(), scenario("rate_limited"))
    assert response.status_code == 429
    assert response["x-ratelimit-limit-requests"] == "5"


# --- failures upstream: the simulator fails like an upstream, the router and settlement do the rest -------------


def test_upstream_error_is_retried_then_a_502_with_a_failed_receipt(test_key, funded_team):
    response = V1(test_key).post("/chat/completions", chat(), scenario("upstream_error"))
    assert response.status_code == 502, response.content
    assert response.json()["error"]["code"] == "upstream_error"
    assert response.json()["error"]["type"] == "upstream_error"
    receipt = Receipt.objects.get()
    assert receipt.request_id == response["X-Request-Id"]
    assert (receipt.status, receipt.error_code, receipt.is_test) == ("failed", "upstream_error", True)
    assert receipt.attempts == 2  # GATEWAY_ROUTE_RETRIES = 1: a 5xx is retried once, as with a real upstream
    assert (receipt.provider, receipt.total_cost_nusd) == ("simulator", 0)
    assert_no_money_moved(funded_team)


def test_timeout_is_a_504_after_a_short_delay_with_a_failed_receipt(test_key, funded_team):
    started = time.perf_counter()
    response = V1(test_key).post("/chat/completions", chat(), scenario("timeout"))
    assert time.perf_counter() - started >= 0.2
    assert response.status_code == 504, response.content
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert response.json()["error"]["type"] == "timeout_error"
    receipt = Receipt.objects.get()
    assert (receipt.status, receipt.error_code, receipt.attempts) == ("failed", "upstream_timeout", 1)
    assert_no_money_moved(funded_team)


@pytest.mark.parametrize(
    ("name", "status", "code"), [("upstream_error", 502, "upstream_error"), ("timeout", 504, "upstream_timeout")]
)
def test_a_stream_that_fails_before_its_first_chunk_is_a_plain_error_response(
    test_key, funded_team, name, status, code
):
    response = V1(test_key).post("/chat/completions", stream_body(), scenario(name))
    assert response.status_code == status
    assert response["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == code
    assert Receipt.objects.get().status == "failed"


def test_stream_cut_breaks_after_a_few_chunks_with_an_in_band_error_and_a_partial_receipt(test_key, funded_team):
    response = V1(test_key).post("/chat/completions", stream_body(), scenario("stream_cut"))
    assert response.status_code == 200
    frames = data_frames(response)
    assert "[DONE]" not in frames  # it broke: no terminator, no usage chunk
    chunks, error = frames[:-1], frames[-1]
    assert isinstance(error, dict) and error["error"]["code"] == "upstream_error"
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks)  # type: ignore[index]
    assert text and len(chunks) == 1 + simulator.STREAM_CUT_AFTER_CHUNKS  # the role chunk, then three of text
    receipt = Receipt.objects.get()
    assert receipt.request_id == response["X-Request-Id"]
    assert (receipt.status, receipt.is_test, receipt.streamed) == ("partial", True, True)
    assert receipt.completion_tokens == count_tokens(text)  # what was delivered, counted
    assert receipt.total_cost_nusd > 0  # what it would have cost a live key; a test key pays nothing
    assert_no_money_moved(funded_team)


def test_stream_cut_on_a_plain_request_is_a_body_cut_short_so_a_502(test_key, funded_team):
    response = V1(test_key).post("/chat/completions", chat(), scenario("stream_cut"))
    assert response.status_code == 502
    assert Receipt.objects.get().error_code == "upstream_error"


def test_slow_paces_the_tokens_and_succeeds(test_key, funded_team):
    body = stream_body(max_tokens=10)
    started = time.perf_counter()
    fast = V1(test_key).post("/chat/completions", body)
    fast_s = time.perf_counter() - started
    started = time.perf_counter()
    slow = V1(test_key).post("/chat/completions", body, scenario("slow"))
    slow_s = time.perf_counter() - started
    assert fast.status_code == slow.status_code == 200
    paced = simulator.SLOW_LATENCY_MS / 1000 + 10 / simulator.SLOW_TOKENS_PER_SECOND
    assert slow_s >= paced * 0.9 > fast_s
    assert data_frames(slow)[-1] == "[DONE]"
    assert len(data_frames(slow)) > 3  # tokens came as separate chunks
    usage = data_frames(slow)[-2]["usage"]  # type: ignore[index]
    assert Receipt.objects.get(public_id=usage["receipt_id"]).status == "succeeded"
    assert usage["ttft_ms"] >= simulator.SLOW_LATENCY_MS * 0.9


# --- the other endpoints, the model suffix, bad input, live keys -------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/completions", {"model": "demo-chat", "prompt": "Once", "max_tokens": 5}),
        ("/embeddings", {"model": "demo-embed", "input": "hello"}),
    ],
)
def test_the_other_endpoints_meet_the_same_world(test_key, funded_team, path, body):
    response = V1(test_key).post(path, body, scenario("upstream_error"))
    assert response.status_code == 502
    assert Receipt.objects.get().error_code == "upstream_error"


def test_a_model_suffix_asks_for_a_scenario_and_the_receipt_names_the_plain_model(test_key, funded_team):
    response = V1(test_key).post("/chat/completions", chat(model="demo-chat@scenario=upstream_error"))
    assert response.status_code == 502
    receipt = Receipt.objects.get()
    assert (receipt.model_requested, receipt.model_routed) == ("demo-chat", "demo-chat")


def test_an_unknown_scenario_is_a_400_naming_the_header_and_changes_nothing(test_key, funded_team):
    response = V1(test_key).post("/chat/completions", chat(), scenario("meteor_strike"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (
        "invalid_test_scenario",
        HEADER,
        "invalid_request_error",
    )
    assert HEADER in error["message"] and "meteor_strike" in error["message"] and "stream_cut" in error["message"]
    suffix = V1(test_key).post("/chat/completions", chat(model="demo-chat@scenario=nope"))
    assert (suffix.status_code, suffix.json()["error"]["param"]) == (400, "model")
    assert not Receipt.objects.exists()
    assert_no_money_moved(funded_team)


def test_a_header_and_a_suffix_that_disagree_are_refused(test_key, funded_team):
    response = V1(test_key).post("/chat/completions", chat(model="demo-chat@scenario=slow"), scenario("timeout"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_test_scenario"


@pytest.mark.parametrize("name", ["insufficient_balance", "rate_limited", "upstream_error", "timeout", "nonsense"])
def test_a_live_key_ignores_the_header_entirely(live_key, funded_team, name):
    response = V1(live_key).post("/chat/completions", chat(), scenario(name))
    assert response.status_code == 200, response.content
    receipt = Receipt.objects.get(public_id=response.json()["usage"]["receipt_id"])
    assert (receipt.status, receipt.is_test) == ("succeeded", False)
    assert Wallet.objects.get(team=funded_team).balance_nusd == 10 * USD - receipt.total_cost_nusd


def test_a_live_key_with_a_suffixed_model_gets_an_unknown_model(live_key, funded_team):
    response = V1(live_key).post("/chat/completions", chat(model="demo-chat@scenario=timeout"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_an_outsider_sees_none_of_the_scenario_receipts(test_key, funded_team, other_team):
    V1(test_key).post("/chat/completions", chat(), scenario("upstream_error"))
    assert Receipt.objects.filter(team=funded_team).count() == 1
    assert not Receipt.objects.filter(team=other_team).exists()
