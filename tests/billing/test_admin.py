"""Operators: read-only money in the admin, and an "Adjust balance" action that asks for amount and reason."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from accounts.models import AuditLog, User
from billing.adjustments import adjust_balance
from billing.errors import BillingError
from billing.models import LedgerEntry, LedgerKind, Wallet
from billing.reconcile import find_discrepancies
from tests.billing.calls import place_hold, settle
from tests.billing.conftest import META, PRICES, USD, usage

CHANGELIST = "/admin/billing/wallet/"


@pytest.fixture
def operator(db) -> User:
    return User.objects.create_superuser(email="root@tollgate.test", password="x-very-secret-1")


@pytest.fixture
def admin_client(client, operator):
    client.force_login(operator)
    return client


def test_adjust_balance_writes_a_ledger_entry_and_an_audit_row(funded_team, operator):
    entry = adjust_balance(funded_team, -2 * USD, actor=operator, reason="  refund for outage #12 ")
    assert (entry.kind, entry.amount_nusd, entry.balance_after_nusd) == (LedgerKind.ADJUSTMENT, -2 * USD, 8 * USD)
    assert (entry.actor, entry.reason) == (operator, "refund for outage #12")
    log = AuditLog.objects.get(action="billing.adjusted")
    assert (log.team, log.actor, log.metadata["amount_nusd"], log.metadata["reason"]) == (
        funded_team,
        operator,
        -2 * USD,
        "refund for outage #12",
    )
    assert find_discrepancies() == []


@pytest.mark.parametrize(
    ("amount", "reason", "code"),
    [
        (USD, "", "reason_required"),
        (USD, "   ", "reason_required"),
        (0, "why", "invalid_amount"),
        (1.5, "why", "invalid_amount"),
        (10**30, "why", "invalid_amount"),
        (USD, "x" * 301, "reason_too_long"),
    ],
)
def test_adjust_balance_refuses_bad_input_and_writes_nothing(funded_team, operator, amount, reason, code):
    with pytest.raises(BillingError) as exc:
        adjust_balance(funded_team, amount, actor=operator, reason=reason)
    assert exc.value.code == code
    assert not LedgerEntry.objects.filter(kind=LedgerKind.ADJUSTMENT).exists()
    assert not AuditLog.objects.filter(action="billing.adjusted").exists()


def test_the_action_asks_for_amount_and_reason_then_adjusts(admin_client, funded_team, operator):
    wallet = Wallet.objects.get(team=funded_team)
    form = admin_client.post(CHANGELIST, {"action": "adjust_balance_action", "_selected_action": [wallet.pk]})
    assert form.status_code == 200
    for label in (b"Amount (USD)", b"Memo for the customer", b"Internal note", b"Allow a negative balance", b"acme"):
        assert label in form.content, label

    done = admin_client.post(
        CHANGELIST,
        {
            "action": "adjust_balance_action",
            "_selected_action": [wallet.pk],
            "apply": "1",
            "amount_usd": "2.500000001",
            "reason": "goodwill credit",
        },
    )
    assert done.status_code == 302
    entry = LedgerEntry.objects.get(kind=LedgerKind.ADJUSTMENT)
    assert (entry.amount_nusd, entry.actor, entry.reason) == (2_500_000_001, operator, "goodwill credit")
    assert Wallet.objects.get(pk=wallet.pk).balance_nusd == 12 * USD + 500_000_001
    assert AuditLog.objects.filter(action="billing.adjusted", actor=operator).count() == 1


def test_a_debit_below_zero_is_refused_unless_the_operator_allows_a_negative_balance(funded_team, operator):
    with pytest.raises(BillingError) as exc:
        adjust_balance(funded_team, -11 * USD, actor=operator, reason="chargeback")
    assert exc.value.code == "would_go_negative" and "$-1.00" not in exc.value.message
    assert "-$1.00" in exc.value.message and "Allow a negative balance" in exc.value.message
    assert Wallet.objects.get(team=funded_team).balance_nusd == 10 * USD
    assert not LedgerEntry.objects.filter(kind=LedgerKind.ADJUSTMENT).exists()

    entry = adjust_balance(funded_team, -11 * USD, actor=operator, reason="chargeback", allow_negative=True)
    assert entry.balance_after_nusd == -USD
    assert AuditLog.objects.get(action="billing.adjusted").metadata["allow_negative"] is True
    # The books agree; check_ledger still flags the wallet until its balance is back at zero or above.
    assert [d.problems for d in find_discrepancies()] == [["balance -1000000000 is below zero"]]


def test_a_debit_counts_what_running_requests_hold(funded_team, operator):
    place_hold(team_id=funded_team.id, key_id=None, request_id="r", amount_nusd=3 * USD, is_test=False)
    with pytest.raises(BillingError) as exc:
        adjust_balance(funded_team, -8 * USD, actor=operator, reason="too much")  # 10 - 3 held - 8 < 0
    assert exc.value.code == "would_go_negative"
    assert adjust_balance(funded_team, -7 * USD, actor=operator, reason="exactly to zero").balance_after_nusd == 3 * USD


def test_the_customer_sees_the_memo_but_never_the_internal_note_or_the_operators_email(
    admin_client, client, funded_team, owner, operator
):
    wallet = Wallet.objects.get(team=funded_team)
    admin_client.post(
        CHANGELIST,
        {
            "action": "adjust_balance_action",
            "_selected_action": [wallet.pk],
            "apply": "1",
            "amount_usd": "3",
            "memo": "Goodwill credit for the outage",
            "reason": "ticket 4411, approved by finance",
        },
    )
    entry = LedgerEntry.objects.get(kind=LedgerKind.ADJUSTMENT)
    assert (entry.memo, entry.reason, entry.actor) == (
        "Goodwill credit for the outage",
        "ticket 4411, approved by finance",
        operator,
    )
    client.force_login(owner)
    html = client.get(f"/t/{funded_team.public_id}/billing/").content.decode()
    assert "Goodwill credit for the outage" in html and "$3.00" in html
    assert "ticket 4411" not in html and operator.email not in html
    assert "test credit" not in html  # the fixture grant's internal reason


def test_the_action_refuses_a_debit_below_zero_with_a_message_and_writes_nothing(admin_client, funded_team):
    wallet = Wallet.objects.get(team=funded_team)
    data = {"action": "adjust_balance_action", "_selected_action": [wallet.pk], "apply": "1"}
    refused = admin_client.post(CHANGELIST, {**data, "amount_usd": "-20", "reason": "chargeback"}, follow=True)
    assert "Allow a negative balance" in refused.content.decode()
    assert Wallet.objects.get(pk=wallet.pk).balance_nusd == 10 * USD
    admin_client.post(CHANGELIST, {**data, "amount_usd": "-20", "reason": "chargeback", "allow_negative": "on"})
    assert Wallet.objects.get(pk=wallet.pk).balance_nusd == -10 * USD


def test_the_admin_shows_the_same_exact_amounts_as_the_dashboard(admin_client, funded_team):
    from billing.money import usd
    from gateway.price_book import create_model

    receipt = settle(
        place_hold(team_id=funded_team.id, key_id=None, request_id="r", amount_nusd=USD, is_test=False),
        usage=usage(prompt=3, completion=1, cached=1),
        prices=PRICES,
        meta=META,
    )
    assert receipt.total_cost_nusd == 6_250  # $0.00000625: rounded to six decimals it would read $0.000006
    create_model("cheap-model", input_price_nusd=500, output_price_nusd=1_500)
    receipts = admin_client.get("/admin/billing/receipt/").content.decode()
    assert usd(receipt.total_cost_nusd) in receipts and "$0.000000<" not in receipts
    ledger = admin_client.get("/admin/billing/ledgerentry/").content.decode()
    assert "-$0.00000625" in ledger and "$9.99999375" in ledger
    models = admin_client.get("/admin/gateway/catalogmodel/").content.decode()
    assert "$0.50" in models and "$1.50" in models and "$0.5<" not in models


@pytest.mark.parametrize(
    "data",
    [
        {"amount_usd": "5", "reason": ""},
        {"amount_usd": "", "reason": "why"},
        {"amount_usd": "ten", "reason": "why"},
        {"amount_usd": "0", "reason": "why"},
        {"amount_usd": "0.0000000001", "reason": "why"},
        {"amount_usd": "99999999999", "reason": "why"},
    ],
)
def test_the_action_refuses_bad_input_and_writes_nothing(admin_client, funded_team, data):
    wallet = Wallet.objects.get(team=funded_team)
    response = admin_client.post(
        CHANGELIST, {"action": "adjust_balance_action", "_selected_action": [wallet.pk], "apply": "1", **data}
    )
    assert response.status_code == 200 and b"errorlist" in response.content
    assert not LedgerEntry.objects.filter(kind=LedgerKind.ADJUSTMENT).exists()
    assert Wallet.objects.get(pk=wallet.pk).balance_nusd == 10 * USD


def test_money_is_read_only_in_the_admin(admin_client, funded_team):
    settle(
        place_hold(team_id=funded_team.id, key_id=None, request_id="r", amount_nusd=USD, is_test=False),
        usage=usage(),
        prices=PRICES,
        meta=META,
    )
    for model in ("wallet", "ledgerentry", "receipt", "hold", "topup", "stripeevent"):
        listing = admin_client.get(f"/admin/billing/{model}/")
        assert listing.status_code == 200, model
        assert admin_client.get(f"/admin/billing/{model}/add/").status_code == 403
    entry = LedgerEntry.objects.first()
    page = admin_client.get(f"/admin/billing/ledgerentry/{entry.pk}/change/")
    assert page.status_code == 200 and b'name="amount_nusd"' not in page.content  # shown, not editable


def test_listings_filter_and_search(admin_client, funded_team, other_team):
    ok = [
        "/admin/billing/receipt/?status__exact=succeeded&is_test__exact=0",
        f"/admin/billing/receipt/?team__id__exact={funded_team.id}&q=demo-chat",
        "/admin/billing/ledgerentry/?kind__exact=grant&q=acme",
        "/admin/billing/hold/?status__exact=open",
        "/admin/billing/wallet/?q=acme",
    ]
    for url in ok:
        assert admin_client.get(url).status_code == 200, url
    assert b"evil" not in admin_client.get("/admin/billing/wallet/?q=acme").content


def test_staff_without_the_change_permission_cannot_adjust(client, funded_team):
    staff = User.objects.create_user(email="viewer@tollgate.test", password="x-very-secret-1", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_wallet"))
    client.force_login(staff)
    wallet = Wallet.objects.get(team=funded_team)
    assert b"adjust_balance_action" not in client.get(CHANGELIST).content
    client.post(
        CHANGELIST,
        {
            "action": "adjust_balance_action",
            "_selected_action": [wallet.pk],
            "apply": "1",
            "amount_usd": "100",
            "reason": "me",
        },
    )
    assert not LedgerEntry.objects.filter(kind=LedgerKind.ADJUSTMENT).exists()
