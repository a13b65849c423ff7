"""Events are stored in the transaction of the change they describe: a rolled-back change has no event and sends
nothing; a committed one always has its event, delivered at once. Every event type the issue lists is produced
by the real change (keys, members, top-ups, the low-balance crossing), or, for image jobs, by the one call the
image code will make."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.db import transaction
from django.test import TestCase
from django.utils import timezone

from accounts import services as account_services
from accounts.keys import KeyActor, mint_key, revoke_key, rotate_key
from accounts.models import ApiKey, Role
from billing import stripe_client, topups
from billing.adjustments import adjust_balance
from billing.events import set_low_balance_threshold
from billing.models import TopUp, Wallet
from billing.money import NUSD_PER_CENT, NUSD_PER_USD
from tests.billing.calls import place_hold, settle
from tests.billing.conftest import META, PRICES, fund, usage
from tests.billing.stripe_fixtures import WHSEC, checkout_session, event, post
from tests.webhooks.conftest import add_endpoint, verifies
from webhooks.events import emit
from webhooks.models import Delivery, Event

USD = NUSD_PER_USD


def received(receiver) -> list[dict]:
    return [json.loads(r.body) for r in receiver.requests]


def types(receiver) -> list[str]:
    return [e["type"] for e in received(receiver)]


# --- the transaction ------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_event_for_a_change_that_rolled_back_never_exists_and_is_never_sent(team, owner, receiver):
    add_endpoint(team, owner, receiver.url)

    with pytest.raises(RuntimeError, match="boom"), transaction.atomic():
        mint_key(team=team, name="doomed", created_by=owner)
        assert Event.objects.filter(type="key.created").count() == 1  # inside, it exists with its change
        raise RuntimeError("boom")

    assert not ApiKey.objects.filter(name="doomed").exists()
    assert not Event.objects.exists() and not Delivery.objects.exists()
    assert receiver.requests == []

    minted = mint_key(team=team, name="kept", created_by=owner)  # committed: delivered as it commits
    assert [(e["type"], e["data"]["object"]["id"]) for e in received(receiver)] == [
        ("key.created", minted.key.public_id)
    ]


@pytest.mark.django_db(transaction=True)
def test_events_of_a_nested_block_are_discarded_when_the_outer_transaction_rolls_back(team, owner, receiver):
    add_endpoint(team, owner, receiver.url)
    with pytest.raises(RuntimeError), transaction.atomic():
        with transaction.atomic():
            mint_key(team=team, name="inner", created_by=owner)
        raise RuntimeError("outer fails")
    assert not Event.objects.exists() and receiver.requests == []


@pytest.mark.django_db(transaction=True)
def test_emit_refuses_to_run_outside_the_transaction_of_a_change(team):
    with pytest.raises(RuntimeError, match="inside the transaction"):
        emit(team_id=team.pk, type="key.created", data={})
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_emit_refuses_an_unknown_event_type(team):
    with pytest.raises(ValueError, match="Unknown event type"):
        emit(team_id=team.pk, type="key.exploded", data={})


@pytest.mark.django_db(transaction=True)
def test_an_image_jobs_terminal_event_reaches_the_receiver_as_its_transaction_commits(team, owner, receiver):
    """What issue 12's image jobs will do: emit inside the job's status change. No polling: the POST has
    arrived by the time the transaction block is left."""
    _, secret = add_endpoint(team, owner, receiver.url, events=["image.succeeded", "image.failed"])
    job = {"id": "img_01JOB", "object": "image.job", "status": "succeeded", "model": "demo-image", "created_at": 1}
    with transaction.atomic():
        emit(team_id=team.pk, type="image.succeeded", data=job)
        assert receiver.requests == []  # not before the commit
    [got] = receiver.requests
    assert verifies(got, secret)
    assert json.loads(got.body)["data"]["object"] == job


@pytest.mark.django_db(transaction=True)
def test_another_teams_endpoint_never_sees_acmes_events(team, owner, outsider, other_team, receiver):
    add_endpoint(other_team, outsider, receiver.url)
    mint_key(team=team, name="acme only", created_by=owner)
    assert receiver.requests == []


# --- keys and members ------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_creating_rotating_and_revoking_a_key_each_send_an_event_without_the_secret(team, owner, receiver):
    add_endpoint(team, owner, receiver.url)
    minted = mint_key(team=team, name="backend", created_by=owner, scopes=["inference"])
    actor = KeyActor.for_user(owner, team)
    rotated = rotate_key(minted.key, actor=actor, grace_seconds=3600)
    revoke_key(rotated.key, actor=actor)

    created, rotation, revocation = received(receiver)
    assert types(receiver) == ["key.created", "key.rotated", "key.revoked"]
    assert created["data"]["object"] == {
        "id": minted.key.public_id,
        "object": "api_key",
        "name": "backend",
        "prefix": minted.key.masked,
        "mode": "live",
        "scopes": ["inference"],
        "status": "active",
        "created_at": created["data"]["object"]["created_at"],
        "created_by": owner.email,
        "expires_at": None,
        "rotated_at": None,
        "revoked_at": None,
    }
    assert rotation["data"]["object"]["previous_prefix"] == minted.key.masked
    assert rotation["data"]["object"]["prefix"] == rotated.key.masked
    assert rotation["data"]["object"]["previous_secret_expires_at"] is not None
    assert revocation["data"]["object"]["status"] == "revoked"
    everything = b"".join(r.body for r in receiver.requests).decode()
    for secret in (minted.plaintext, rotated.plaintext):
        assert secret not in everything


@pytest.mark.django_db(transaction=True)
def test_accepting_an_invitation_sends_member_joined(team, owner, receiver):
    add_endpoint(team, owner, receiver.url, events=["member.joined"])
    issued = account_services.invite_member(actor=owner, team=team, email="new.hire@acme.test", role=Role.DEVELOPER)
    account_services.sign_up_with_invitation(token=issued.token, password="correct-horse-battery", name="New Hire")

    [joined] = received(receiver)
    assert joined["type"] == "member.joined"
    member = joined["data"]["object"]
    assert (member["email"], member["name"], member["role"], member["invited_by"]) == (
        "new.hire@acme.test",
        "New Hire",
        "developer",
        owner.email,
    )


# --- top-ups -----------------------------------------------------------------------------------------------------


@pytest.fixture
def stripe_webhooks(settings):
    settings.STRIPE_WEBHOOK_SECRET = WHSEC
    settings.STRIPE_SECRET_KEY = ""


@pytest.mark.django_db
def test_a_credited_checkout_top_up_sends_topup_succeeded_with_exact_amounts(
    client, team, owner, receiver, stripe_webhooks
):
    add_endpoint(team, owner, receiver.url, events=["topup.succeeded", "topup.failed"])
    topup = TopUp.objects.create(
        team=team, amount_nusd=2550 * NUSD_PER_CENT, stripe_session_id="cs_1", created_by=owner
    )
    payload = event("checkout.session.completed", checkout_session(topup))
    post(client, payload)
    post(client, payload)  # Stripe redelivers: credited once, so one event

    [credited] = [json.loads(r.body, parse_float=Decimal) for r in receiver.requests]
    data = credited["data"]["object"]
    assert credited["type"] == "topup.succeeded"
    assert (data["id"], data["status"], data["kind"], data["currency"]) == (topup.public_id, "paid", "checkout", "usd")
    assert data["amount"] == Decimal("25.5") and data["amount_nusd"] == 2550 * NUSD_PER_CENT
    assert data["balance_after"] == Decimal("25.5")


@pytest.mark.django_db
def test_an_expired_checkout_sends_topup_failed(client, team, owner, receiver, stripe_webhooks):
    add_endpoint(team, owner, receiver.url, events=["topup.failed"])
    topup = TopUp.objects.create(team=team, amount_nusd=500 * NUSD_PER_CENT, stripe_session_id="cs_2", created_by=owner)
    post(
        client,
        event("checkout.session.expired", {**checkout_session(topup, payment_status="unpaid"), "status": "expired"}),
    )

    [failed] = received(receiver)
    assert failed["type"] == "topup.failed"
    assert (failed["data"]["object"]["id"], failed["data"]["object"]["status"]) == (topup.public_id, "failed")
    assert failed["data"]["object"]["failure_reason"] == "checkout_expired"


@pytest.mark.django_db
def test_a_declined_auto_recharge_sends_topup_failed_with_the_decline(team, owner, receiver, settings, monkeypatch):
    settings.STRIPE_SECRET_KEY = "sk_test_fake"
    add_endpoint(team, owner, receiver.url, events=["topup.failed", "topup.succeeded"])

    def decline(**kwargs):
        raise stripe_client.PaymentDeclined("Your card was declined.", code="card_declined", payment_intent_id="pi_x")

    monkeypatch.setattr(stripe_client, "charge_off_session", decline)
    Wallet.objects.filter(team=team).update(
        auto_recharge_enabled=True, stripe_customer_id="cus_1", stripe_payment_method_id="pm_1"
    )
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert topups.run_auto_recharge(Wallet.objects.get(team=team).pk) == "declined"

    [failed] = received(receiver)
    assert failed["type"] == "topup.failed"
    assert failed["data"]["object"]["kind"] == "auto_recharge"
    assert failed["data"]["object"]["failure_reason"] == "Your card was declined."


# --- balance.low ---------------------------------------------------------------------------------------------------


def spend(team, key, usd: int) -> None:
    """One paid request of `usd` dollars through the real hold/settle path; its after-commit receivers run."""
    tokens = usd * USD // PRICES.output_nusd
    with TestCase.captureOnCommitCallbacks(execute=True):
        hold = place_hold(
            team_id=team.id,
            key_id=key.key.id,
            request_id=f"req_{timezone.now().timestamp()}",
            amount_nusd=tokens * PRICES.output_nusd,
            is_test=False,
        )
        settle(hold, usage=usage(prompt=0, completion=tokens), prices=PRICES, meta=META)


@pytest.mark.django_db
def test_balance_low_is_sent_once_per_crossing_and_re_arms_above_the_threshold(team, owner, receiver):
    add_endpoint(team, owner, receiver.url, events=["balance.low"])
    fund(team, 10)
    key = mint_key(team=team, name="spender", created_by=owner)
    set_low_balance_threshold(team, actor=owner, threshold_cents=500)
    assert received(receiver) == []  # $10 is above $5

    spend(team, key, 3)  # $7
    assert received(receiver) == []
    spend(team, key, 3)  # $4: crosses below
    spend(team, key, 1)  # $3: still below, no second event
    spend(team, key, 1)  # $2
    [low] = [json.loads(r.body, parse_float=Decimal) for r in receiver.requests]
    assert low["type"] == "balance.low"
    assert low["data"]["object"]["credits"] == Decimal(4)
    assert low["data"]["object"]["low_balance_threshold"] == Decimal(5)

    with TestCase.captureOnCommitCallbacks(execute=True):
        adjust_balance(team, 10 * USD, actor=owner, reason="goodwill")  # $12: back above, re-armed, nothing sent
    assert len(receiver.requests) == 1 and not Wallet.objects.get(team=team).low_balance
    spend(team, key, 8)  # $4: a second crossing
    assert types(receiver) == ["balance.low", "balance.low"]


@pytest.mark.django_db
def test_a_threshold_set_above_the_balance_sends_balance_low_at_once_and_off_sends_nothing(team, owner, receiver):
    add_endpoint(team, owner, receiver.url, events=["balance.low"])
    fund(team, 2)
    key = mint_key(team=team, name="spender", created_by=owner)
    with TestCase.captureOnCommitCallbacks(execute=True):
        set_low_balance_threshold(team, actor=owner, threshold_cents=500)
    assert types(receiver) == ["balance.low"]

    set_low_balance_threshold(team, actor=owner, threshold_cents=None)
    spend(team, key, 1)
    assert types(receiver) == ["balance.low"]


@pytest.mark.django_db
def test_only_billing_managers_set_the_threshold(team, developer, viewer):
    from accounts.services import PermissionDenied

    for person in (developer, viewer):
        with pytest.raises(PermissionDenied):
            set_low_balance_threshold(team, actor=person, threshold_cents=500)
    assert Wallet.objects.get(team=team).low_balance_threshold_nusd is None
