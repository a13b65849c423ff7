"""GET /v1/balance, /v1/receipts and /v1/receipts/{id}: exact money, team-scoped, clear 400s."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.keys import mint_key
from accounts.models import AuditLog
from billing.models import Hold, LedgerEntry, Receipt
from billing.settlement import ReceiptMeta
from tests.billing.calls import place_hold, release, settle
from tests.billing.conftest import META, PRICES, USD, fund, usage


def get(client, path, api_key, **params):
    return client.get(path, params, HTTP_AUTHORIZATION=f"Bearer {api_key.plaintext}")


def exact(response):
    """Parse money as Decimal, as a careful client would: proves the body holds the exact digits."""
    return json.loads(response.content, parse_float=Decimal)


def spend(team, key, *, request_id="req_1", prompt=100, completion=50, is_test=False, when=None, time_machine=None):
    if when is not None:
        time_machine.move_to(when, tick=False)
    ref = place_hold(team_id=team.id, key_id=key.key.id, request_id=request_id, amount_nusd=USD, is_test=is_test)
    return settle(ref, usage=usage(prompt=prompt, completion=completion), prices=PRICES, meta=META)


def test_balance_shows_credits_held_and_available_as_exact_numbers(client, team, live_key):
    fund(team, 10)
    place_hold(team_id=team.id, key_id=None, request_id="r", amount_nusd=1_234_567_891, is_test=False)
    response = get(client, "/v1/balance", live_key)
    assert response.status_code == 200
    assert exact(response) == {
        "credits": Decimal("10"),
        "held_credits": Decimal("1.234567891"),
        "available_credits": Decimal("8.765432109"),
        "currency": "usd",
    }
    assert b'"held_credits":1.234567891' in response.content  # a JSON number, digit for digit
    assert response["X-Request-Id"].startswith("req_")


def test_balance_of_an_empty_wallet_is_zero(client, team, live_key):
    assert exact(get(client, "/v1/balance", live_key))["credits"] == 0


def test_balance_needs_the_billing_read_scope(client, team, owner):
    key = mint_key(team=team, name="infer-only", scopes=["inference"], created_by=owner)
    response = get(client, "/v1/balance", key)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_scope"


def test_balance_without_a_key_is_401_in_the_envelope(client, db):
    response = client.get("/v1/balance")
    assert response.status_code == 401
    body = response.json()
    assert body["error"]["code"] == "invalid_api_key" and body["request_id"].startswith("req_")


def test_an_old_secret_in_its_grace_window_gets_the_grace_header(client, team, live_key):
    # What a rotation leaves behind: the old secret's hash kept as the previous one until the grace end.
    key = live_key.key
    key.previous_secret_hash, key.secret_hash = key.secret_hash, "0" * 64
    key.previous_expires_at = timezone.now() + timedelta(hours=1)
    key.save()
    for path in ("/v1/balance", "/v1/receipts"):
        response = get(client, path, live_key)
        assert response.status_code == 200
        assert response["X-Tollgate-Key-Grace-Ends-At"].endswith("Z")


def test_receipts_list_newest_first_with_every_figure(client, funded_team, live_key, time_machine):
    first = spend(funded_team, live_key, request_id="req_a", when="2026-02-01T10:00:00Z", time_machine=time_machine)
    second = spend(
        funded_team,
        live_key,
        request_id="req_b",
        prompt=1_000,
        completion=2_000,
        when="2026-02-02T10:00:00Z",
        time_machine=time_machine,
    )
    response = get(client, "/v1/receipts", live_key)
    assert response.status_code == 200
    body = exact(response)
    assert [r["id"] for r in body["data"]] == [second.public_id, first.public_id]
    assert (body["object"], body["has_more"], body["first_id"], body["last_id"]) == (
        "list",
        False,
        second.public_id,
        first.public_id,
    )
    row = body["data"][0]
    assert row["usage"] == {
        "prompt_tokens": 1_000,
        "cached_tokens": 0,
        "completion_tokens": 2_000,
        "total_tokens": 3_000,
    }
    assert (row["input_cost_usd"], row["output_cost_usd"], row["total_cost_usd"]) == (
        Decimal("0.001"),
        Decimal("0.006"),
        Decimal("0.007"),
    )
    assert row["prices_usd_per_million_tokens"] == {"input": 1, "cached": Decimal("0.25"), "output": 3}
    assert row["hold_usd"] == 1 and row["status"] == "succeeded" and row["test"] is False
    assert (row["key_id"], row["request_id"], row["model"], row["provider"]) == (
        live_key.key.public_id,
        "req_b",
        "demo-chat",
        "simulator",
    )
    assert row["created_at"] == "2026-02-02T10:00:00Z"


def test_receipts_page_through_with_after(client, funded_team, live_key):
    made = [spend(funded_team, live_key, request_id=f"req_{i}") for i in range(5)]
    newest_first = [r.public_id for r in reversed(made)]
    seen, after = [], None
    while True:
        params = {"limit": 2} | ({"after": after} if after else {})
        body = get(client, "/v1/receipts", live_key, **params).json()
        seen += [r["id"] for r in body["data"]]
        if not body["has_more"]:
            break
        after = body["last_id"]
    assert seen == newest_first


def test_receipts_filter_by_date_and_key(client, funded_team, live_key, owner, time_machine):
    other_key = mint_key(team=funded_team, name="other", created_by=owner)
    jan = spend(funded_team, live_key, when="2026-01-15T08:00:00Z", time_machine=time_machine)
    feb = spend(funded_team, live_key, when="2026-02-15T08:00:00Z", time_machine=time_machine)
    feb_other = spend(funded_team, other_key, when="2026-02-20T08:00:00Z", time_machine=time_machine)

    def ids(**params):
        response = get(client, "/v1/receipts", live_key, **params)
        assert response.status_code == 200, response.content
        return [r["id"] for r in response.json()["data"]]

    assert ids(since="2026-02-01") == [feb_other.public_id, feb.public_id]
    assert ids(until="2026-01-15") == [jan.public_id]  # a date includes that whole day
    assert ids(since="2026-02-01", until="2026-02-15T08:00:00Z") == []
    assert ids(key=other_key.key.public_id) == [feb_other.public_id]
    assert ids(key=live_key.key.public_id, since="2026-02-01T00:00:00+00:00") == [feb.public_id]


def test_test_key_receipts_are_marked_test(client, funded_team, test_key):
    receipt = spend(funded_team, test_key, is_test=True)
    row = get(client, f"/v1/receipts/{receipt.public_id}", test_key).json()
    assert row["test"] is True and row["mode"] == "test"


def test_a_failed_request_has_a_zero_cost_receipt_with_its_error(client, funded_team, live_key):
    ref = place_hold(team_id=funded_team.id, key_id=live_key.key.id, request_id="r", amount_nusd=5, is_test=False)
    receipt = release(ref, meta=META, error_code="upstream_timeout")
    row = exact(get(client, f"/v1/receipts/{receipt.public_id}", live_key))
    assert (row["status"], row["error_code"], row["total_cost_usd"]) == ("failed", "upstream_timeout", 0)


def test_another_teams_receipt_is_not_found(client, funded_team, live_key, other_team, outsider):
    fund(other_team, 1)
    theirs = settle(
        place_hold(team_id=other_team.id, key_id=None, request_id="r", amount_nusd=USD, is_test=False),
        usage=usage(),
        prices=PRICES,
        meta=ReceiptMeta("chat.completions", "m", "m", "p", "u"),
    )
    response = get(client, f"/v1/receipts/{theirs.public_id}", live_key)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    missing = get(client, "/v1/receipts/rcpt_01JNOPE", live_key)
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "No receipt 'rcpt_01JNOPE'."
    assert get(client, "/v1/receipts", live_key).json()["data"] == []


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": -5}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "99999999999999999999999"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"since": "2026-02-02", "until": "2026-02-01"}, "until"),
        ({"after": "not-a-receipt"}, "after"),
        ({"after": "rcpt_01JUNKNOWN"}, "after"),
        ({"key": "sk-123"}, "key"),
        ({"key": "key_01JUNKNOWN"}, "key"),
    ],
)
def test_bad_query_parameters_are_a_clear_400_naming_the_parameter(client, funded_team, live_key, params, param):
    before = (Receipt.objects.count(), LedgerEntry.objects.count(), Hold.objects.count(), AuditLog.objects.count())
    response = get(client, "/v1/receipts", live_key, **params)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"]["param"] == param and body["error"]["type"] == "invalid_request_error"
    assert param in body["error"]["message"] or "No " in body["error"]["message"]
    assert (
        Receipt.objects.count(),
        LedgerEntry.objects.count(),
        Hold.objects.count(),
        AuditLog.objects.count(),
    ) == before


def test_another_teams_key_id_is_refused_as_a_filter(client, funded_team, live_key, other_team, outsider):
    theirs = mint_key(team=other_team, name="theirs", created_by=outsider)
    response = get(client, "/v1/receipts", live_key, key=theirs.key.public_id)
    assert response.status_code == 400 and response.json()["error"]["param"] == "key"


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_writing_to_a_billing_endpoint_is_refused_in_the_envelope(client, funded_team, live_key, method):
    before = (LedgerEntry.objects.count(), Receipt.objects.count())
    for path in ("/v1/balance", "/v1/receipts"):
        response = getattr(client, method)(
            path,
            data=json.dumps({"credits": 10**12}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {live_key.plaintext}",
        )
        assert response.status_code == 405
        assert response.json()["error"]["code"] == "method_not_allowed"
    assert (LedgerEntry.objects.count(), Receipt.objects.count()) == before
