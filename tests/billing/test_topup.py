"""Starting a Checkout top-up: amounts, permissions, the unconfigured server, and the pages around it."""

from __future__ import annotations

import pytest

from accounts.models import AuditLog
from accounts.services import PermissionDenied
from billing import stripe_client, topups
from billing.models import TopUp, TopUpStatus, Wallet
from billing.money import NUSD_PER_CENT
from billing.services import grant_credit


@pytest.fixture
def fake_stripe(settings, monkeypatch):
    """Stripe configured; our stripe_client boundary records calls instead of reaching the network."""
    settings.STRIPE_SECRET_KEY = "sk_test_fake_for_unit_tests"
    calls: list[tuple[str, dict]] = []

    def create_customer(**kwargs):
        calls.append(("customer", kwargs))
        return "cus_test_new"

    def create_checkout_session(**kwargs):
        calls.append(("session", kwargs))
        session_id = "cs_test_new" if len(calls) <= 2 else f"cs_test_new_{len(calls)}"
        return stripe_client.CheckoutSession(id=session_id, url=f"https://checkout.stripe.test/c/pay/{session_id}")

    monkeypatch.setattr(stripe_client, "create_customer", create_customer)
    monkeypatch.setattr(stripe_client, "create_checkout_session", create_checkout_session)
    return calls


def nothing_written() -> bool:
    return not TopUp.objects.exists() and not AuditLog.objects.filter(action__startswith="billing.").exists()


def test_it_creates_a_pending_top_up_and_a_checkout_session_that_saves_the_card(team, owner, fake_stripe):
    url = topups.start_checkout(team, 2500, owner)

    assert url == "https://checkout.stripe.test/c/pay/cs_test_new"
    topup = TopUp.objects.get()
    assert (topup.status, topup.amount_nusd, topup.stripe_session_id, topup.kind) == (
        TopUpStatus.PENDING,
        2500 * NUSD_PER_CENT,
        "cs_test_new",
        "checkout",
    )
    assert Wallet.objects.get(team=team).stripe_customer_id == "cus_test_new"
    session = dict(fake_stripe)["session"]
    assert session["amount_cents"] == 2500 and session["customer_id"] == "cus_test_new"
    assert session["metadata"] == {
        "tollgate_team": team.public_id,
        "tollgate_topup": topup.public_id,
        "tollgate_kind": "checkout",
    }
    assert session["success_url"].endswith("/billing/topup/success/?session_id={CHECKOUT_SESSION_ID}")
    assert AuditLog.objects.filter(action="billing.topup_started", target=topup.public_id).exists()


def test_it_reuses_the_teams_stripe_customer(team, owner, fake_stripe):
    topups.start_checkout(team, 500, owner)
    topups.start_checkout(team, 1_000_000, owner)

    assert [name for name, _ in fake_stripe] == ["customer", "session", "session"]


@pytest.mark.parametrize("amount", [499, 1_000_001, 0, -2500, 10**15, 25.0, "2500", True, None, 2500.5])
def test_it_refuses_amounts_outside_5_to_10000_dollars_and_writes_nothing(team, owner, fake_stripe, amount):
    with pytest.raises(topups.TopUpError) as exc:
        topups.start_checkout(team, amount, owner)

    assert exc.value.code == "invalid_amount"
    assert "$5" in exc.value.message or "cents" in exc.value.message
    assert nothing_written() and fake_stripe == []


def test_it_says_card_payments_are_not_configured_without_a_stripe_key(team, owner, settings):
    settings.STRIPE_SECRET_KEY = ""

    with pytest.raises(topups.TopUpError) as exc:
        topups.start_checkout(team, 2500, owner)

    assert exc.value.code == "stripe_not_configured"
    assert exc.value.message == (
        "Card top-ups are not enabled on this installation. Redeem a credit code, or ask your administrator."
    )
    assert nothing_written()


def test_a_developer_cannot_buy_credit(team, developer, fake_stripe):
    with pytest.raises(PermissionDenied):
        topups.start_checkout(team, 2500, developer)
    assert nothing_written() and fake_stripe == []


def test_a_stripe_outage_is_a_clear_error_with_nothing_written(team, owner, fake_stripe, monkeypatch):
    def down(**kwargs):
        raise stripe_client.StripeUnavailable("The payment provider is unavailable; try again shortly.")

    monkeypatch.setattr(stripe_client, "create_checkout_session", down)
    with pytest.raises(topups.TopUpError) as exc:
        topups.start_checkout(team, 2500, owner)
    assert exc.value.code == "stripe_unavailable"
    assert nothing_written()


@pytest.mark.parametrize(("text", "cents"), [("25", 2500), ("25.5", 2550), ("$1,000.00", 100_000), (" 5 ", 500)])
def test_dollar_input_converts_exactly_to_cents(text, cents):
    assert topups.parse_usd_to_cents(text) == cents


@pytest.mark.parametrize("text", ["", "abc", "1.001", "NaN", "Infinity", "1e400", None, ["25"]])
def test_unreadable_dollar_input_is_refused(text):
    with pytest.raises(topups.TopUpError):
        topups.parse_usd_to_cents(text)


# --- pages -----------------------------------------------------------------------------------------


def test_the_top_up_form_redirects_to_stripe(client, team, owner, fake_stripe):
    client.force_login(owner)
    response = client.post(f"/billing/teams/{team.public_id}/topup/", {"amount_usd": "25"})

    assert response.status_code == 303
    assert response["Location"] == "https://checkout.stripe.test/c/pay/cs_test_new"


@pytest.mark.parametrize("amount", ["4.99", "10000.01", "-5", "ten", "", "1e9"])
def test_the_top_up_form_answers_bad_amounts_with_a_clear_400_and_writes_nothing(
    client, team, owner, fake_stripe, amount
):
    client.force_login(owner)
    response = client.post(f"/billing/teams/{team.public_id}/topup/", {"amount_usd": amount})

    assert response.status_code == 400
    assert b"between $5 and $10,000" in response.content or b"number of dollars" in response.content
    assert nothing_written()


def test_the_top_up_form_says_payments_are_not_configured(client, team, owner, settings):
    settings.STRIPE_SECRET_KEY = ""
    client.force_login(owner)
    response = client.post(f"/billing/teams/{team.public_id}/topup/", {"amount_usd": "25"})

    assert response.status_code == 503
    assert b"Card top-ups are not enabled on this installation" in response.content
    assert b"sk_" not in response.content and b"STRIPE" not in response.content


def test_an_outsider_cannot_start_a_top_up_for_another_team(client, team, outsider, fake_stripe):
    client.force_login(outsider)
    assert client.post(f"/billing/teams/{team.public_id}/topup/", {"amount_usd": "25"}).status_code == 404
    assert nothing_written()


def test_the_success_page_waits_for_the_webhook_then_shows_the_new_balance(client, team, owner):
    grant_credit(team, amount_nusd=3 * 10**9)
    topup = TopUp.objects.create(team=team, amount_nusd=2500 * NUSD_PER_CENT, stripe_session_id="cs_test_page")
    client.force_login(owner)

    waiting = client.get("/billing/topup/success/", {"session_id": "cs_test_page"})
    assert waiting.status_code == 200
    assert b"Confirming your payment" in waiting.content and b'http-equiv="refresh"' in waiting.content
    assert b"$3.00" in waiting.content

    from django.db import transaction

    with transaction.atomic():
        topups._credit(topup, amount_nusd=topup.amount_nusd, payment_intent_id="pi_page", kind="topup", reason="t")
    done = client.get("/billing/topup/success/", {"session_id": "cs_test_page"})
    assert b"Payment received" in done.content and b"$28.00" in done.content
    assert b'http-equiv="refresh"' not in done.content


def test_the_success_page_of_another_teams_top_up_is_not_found(client, team, outsider):
    TopUp.objects.create(team=team, amount_nusd=2500 * NUSD_PER_CENT, stripe_session_id="cs_test_private")
    client.force_login(outsider)

    assert client.get("/billing/topup/success/", {"session_id": "cs_test_private"}).status_code == 404
    assert client.get("/billing/topup/success/", {"session_id": "cs_nope"}).status_code == 404


def test_the_cancel_page_says_nothing_was_charged(client, owner):
    client.force_login(owner)
    response = client.get("/billing/topup/cancel/")
    assert response.status_code == 200 and b"nothing was charged" in response.content


def test_a_network_failure_shows_a_plain_message_with_the_request_id_and_logs_the_detail(
    client, team, owner, settings, caplog
):
    """Stripe's own text for this names the host and port it tried and sends people to Stripe's support."""
    from tests.live_server import closed_port

    port = closed_port()
    settings.STRIPE_SECRET_KEY = "sk_test_unreachable"
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{port}"
    client.force_login(owner)
    with caplog.at_level("WARNING"):
        response = client.post(f"/billing/teams/{team.public_id}/topup/", {"amount_usd": "25"})

    assert response.status_code == 503
    html = response.content.decode()
    request_id = response["X-Request-Id"]
    assert "Our payment provider could not be reached, so nothing was charged." in html
    assert request_id in html
    for leak in ("127.0.0.1", f":{port}", "support@stripe.com", "APIConnectionError", "sk_test"):
        assert leak not in html, leak
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert request_id in logged and "APIConnectionError" in logged
    assert "sk_test_unreachable" not in logged
    assert nothing_written()
