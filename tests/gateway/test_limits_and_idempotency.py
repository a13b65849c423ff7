"""Rate limits (requests and tokens per minute) and Idempotency-Key replays."""

from __future__ import annotations

import asyncio
import time

import pytest
import time_machine

from accounts.keys import mint_key
from billing.models import Receipt, Wallet
from gateway import catalog
from gateway.models import IdempotencyRecord, IdempotencyStatus
from tests.gateway.conftest import V1, chat

pytestmark = pytest.mark.django_db


@pytest.fixture
def limited(client, funded_team, owner, seeded) -> V1:
    return V1(mint_key(team=funded_team, name="slow", created_by=owner, rpm_limit=2).plaintext)


def test_responses_carry_openai_rate_limit_headers(v1):
    response = v1.post("/chat/completions", chat())
    assert response["x-ratelimit-limit-requests"] == "60"  # the starter plan
    assert response["x-ratelimit-remaining-requests"] == "59"
    assert response["x-ratelimit-reset-requests"].endswith("s")
    assert response["x-ratelimit-limit-tokens"] == "100000"
    assert int(response["x-ratelimit-remaining-tokens"]) < 100000


@time_machine.travel("2026-01-01 12:00:05", tick=False)
def test_a_key_over_its_requests_per_minute_gets_429_with_retry_after(limited):
    assert limited.post("/chat/completions", chat()).status_code == 200
    assert limited.post("/chat/completions", chat()).status_code == 200
    response = limited.post("/chat/completions", chat())
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert response["Retry-After"] == "55"
    assert response["x-ratelimit-remaining-requests"] == "0"
    assert Receipt.objects.count() == 2  # the refused request never reached billing


def test_the_limit_resets_in_the_next_minute(limited):
    with time_machine.travel("2026-01-01 12:00:05", tick=False):
        limited.post("/chat/completions", chat())
        limited.post("/chat/completions", chat())
        assert limited.post("/chat/completions", chat()).status_code == 429
    with time_machine.travel("2026-01-01 12:01:01", tick=False):
        assert limited.post("/chat/completions", chat()).status_code == 200


def test_a_request_bigger_than_the_token_budget_is_refused(client, funded_team, owner, seeded):
    key = V1(mint_key(team=funded_team, name="tiny", created_by=owner, tpm_limit=50).plaintext)
    response = key.post("/chat/completions", chat(max_tokens=100))
    assert response.status_code == 429
    assert "tokens" in response.json()["error"]["message"]


def test_an_idempotent_replay_returns_the_same_body_without_charging_again(v1, funded_team):
    first = v1.post("/chat/completions", chat(), headers={"Idempotency-Key": "order-42"})
    balance = Wallet.objects.get(team=funded_team).balance_nusd
    second = v1.post("/chat/completions", chat(), headers={"Idempotency-Key": "order-42"})
    assert second.status_code == 200
    assert second.content == first.content
    assert second["Idempotent-Replayed"] == "true"
    assert Receipt.objects.count() == 1
    assert Wallet.objects.get(team=funded_team).balance_nusd == balance


def test_the_same_key_with_another_body_is_422(v1):
    v1.post("/chat/completions", chat(), headers={"Idempotency-Key": "k1"})
    response = v1.post("/chat/completions", chat(max_tokens=5), headers={"Idempotency-Key": "k1"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_a_key_still_in_flight_is_409(v1, funded_team):
    from django.utils import timezone

    IdempotencyRecord.objects.create(
        team=funded_team,
        key="busy",
        endpoint="chat.completions",
        fingerprint=__import__("gateway.idempotency", fromlist=["x"]).fingerprint(
            "chat.completions", __import__("orjson").dumps(chat())
        ),
        request_id="req_x",
        expires_at=timezone.now() + timezone.timedelta(hours=1),
    )
    response = v1.post("/chat/completions", chat(), headers={"Idempotency-Key": "busy"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_conflict"


def test_idempotency_keys_are_per_team(v1, client, other_team, outsider, seeded):
    from billing.services import grant_credit

    grant_credit(other_team, amount_nusd=10**9, reason="t")
    theirs = V1(mint_key(team=other_team, name="e", created_by=outsider).plaintext)
    v1.post("/chat/completions", chat(), headers={"Idempotency-Key": "shared"})
    response = theirs.post("/chat/completions", chat(max_tokens=3), headers={"Idempotency-Key": "shared"})
    assert response.status_code == 200
    assert "Idempotent-Replayed" not in response


def test_a_failed_request_releases_its_idempotency_key(v1, funded_team):
    from gateway.models import Route

    Route.objects.filter(model__public_id="demo-chat").update(enabled=False)
    assert v1.post("/chat/completions", chat(), headers={"Idempotency-Key": "retry-me"}).status_code == 503
    Route.objects.filter(model__public_id="demo-chat").update(enabled=True)
    catalog.invalidate()  # bulk updates send no signals; admin saves do
    assert v1.post("/chat/completions", chat(), headers={"Idempotency-Key": "retry-me"}).status_code == 200
    assert IdempotencyRecord.objects.get(key="retry-me").status == IdempotencyStatus.DONE


def test_an_expired_idempotency_key_runs_the_request_again(v1):
    with time_machine.travel("2026-01-01 12:00:00", tick=False):
        v1.post("/chat/completions", chat(), headers={"Idempotency-Key": "old"})
    with time_machine.travel("2026-01-02 12:00:01", tick=False):
        response = v1.post("/chat/completions", chat(), headers={"Idempotency-Key": "old"})
    assert response.status_code == 200
    assert "Idempotent-Replayed" not in response
    assert Receipt.objects.count() == 2


def test_the_hourly_task_purges_expired_idempotency_records(v1):
    from gateway.tasks import purge_idempotency_records

    with time_machine.travel("2026-01-01 12:00:00", tick=False):
        v1.post("/chat/completions", chat(), headers={"Idempotency-Key": "a"})
    with time_machine.travel("2026-01-01 13:00:00", tick=False):
        v1.post("/chat/completions", chat(), headers={"Idempotency-Key": "b"})
    with time_machine.travel("2026-01-02 12:30:00", tick=False):
        assert purge_idempotency_records() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["b"]


# --- a hold placed while the limiter decides (gateway.pipeline.limit_while_holding) ---------------------------


def _another_process_serves(key_id: int, rpm: int, requests: int) -> None:
    """What requests served by another process do to the shared counters, which this process does not see."""
    from asgiref.sync import async_to_sync
    from django.conf import settings

    from gateway import ratelimit

    buckets = [ratelimit.Bucket(f"k{key_id}", rpm, None)]
    window = int(time.time() // ratelimit.WINDOW_SECONDS)
    for _ in range(requests):
        if settings.REDIS_URL:
            async_to_sync(ratelimit._hit_redis)(buckets, window, 1)
        else:
            ratelimit._hit_cache(buckets, window, 1)


@time_machine.travel("2026-01-01 12:00:05", tick=False)
def test_a_key_with_room_to_spare_has_its_hold_placed_while_the_limiter_decides(v1, funded_team, monkeypatch):
    from billing import settlement
    from gateway import ratelimit

    assert v1.post("/chat/completions", chat()).status_code == 200  # the first of the minute: one after the other
    placing = asyncio.Event()
    place_hold, check = settlement.place_hold, ratelimit.check

    async def noting_place_hold(request):
        placing.set()
        return await place_hold(request)

    async def check_once_the_hold_is_being_placed(ctx, *, tokens, now=None):
        await asyncio.wait_for(placing.wait(), 2)  # in sequence, the hold would wait for this check: TimeoutError
        return await check(ctx, tokens=tokens, now=now)

    monkeypatch.setattr(settlement, "place_hold", noting_place_hold)
    monkeypatch.setattr(ratelimit, "check", check_once_the_hold_is_being_placed)
    response = v1.post("/chat/completions", chat())
    assert response.status_code == 200
    assert response["x-ratelimit-remaining-requests"] == "58"  # the starter plan's 60
    assert Receipt.objects.count() == 2
    assert Wallet.objects.get(team=funded_team).held_nusd == 0


@time_machine.travel("2026-01-01 12:00:05", tick=False)
def test_a_refusal_that_comes_after_the_hold_withdraws_it_and_charges_nothing(client, funded_team, owner, seeded):
    from billing.models import Hold, HoldStatus, LedgerEntry

    key = mint_key(team=funded_team, name="shared", created_by=owner, rpm_limit=20)
    shared = V1(key.plaintext)
    assert shared.post("/chat/completions", chat()).status_code == 200  # this process saw 19 left
    _another_process_serves(key.key.id, rpm=20, requests=19)  # ... and another process took them
    balance = Wallet.objects.get(team=funded_team).balance_nusd
    entries = LedgerEntry.objects.count()

    response = shared.post("/chat/completions", chat())

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert response["x-ratelimit-remaining-requests"] == "0"
    refused = Hold.objects.get(request_id=response["x-request-id"])
    assert refused.status == HoldStatus.RELEASED  # it was placed, and it ended
    wallet = Wallet.objects.get(team=funded_team)
    assert (wallet.balance_nusd, wallet.held_nusd) == (balance, 0)
    assert Receipt.objects.count() == 1  # a refused request has no receipt, however far it got
    assert LedgerEntry.objects.count() == entries
    # The refusal is remembered: the next request asks the limiter first and places no hold at all.
    assert shared.post("/chat/completions", chat()).status_code == 429
    assert Hold.objects.count() == 2
