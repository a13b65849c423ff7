"""Credit codes: minted by operators (hashes only), redeemed once per team by members with billing rights,
never more often than allowed, throttled per person and per team, one answer for every bad code."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from accounts.keys import mint_key
from accounts.models import AuditLog, User
from accounts.services import PermissionDenied, create_team
from billing import credit_codes
from billing.models import CreditCode, LedgerEntry, LedgerKind, Wallet
from billing.reconcile import find_discrepancies
from tests.billing.conftest import USD

CODE_PATTERN = re.compile(r"^TG-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")


def mint(amount_usd: int = 5, count: int = 1, **kw) -> list[str]:
    batch = credit_codes.mint_codes(amount_nusd=amount_usd * USD, count=count, actor=None, **kw)
    return [plaintext for _, plaintext in batch.codes]


def balance(team) -> int:
    return Wallet.objects.get(team=team).balance_nusd


def refused(team, code, actor) -> credit_codes.CreditCodeError:
    with pytest.raises(credit_codes.CreditCodeError) as exc:
        credit_codes.redeem(team, code, actor=actor)
    return exc.value


# --- minting -------------------------------------------------------------------------------------------


def test_minted_codes_are_long_random_and_stored_only_as_hashes(db):
    batch = credit_codes.mint_codes(amount_nusd=5 * USD, count=50, actor=None, note="launch week")
    plaintexts = [p for _, p in batch.codes]
    assert len(set(plaintexts)) == 50 and all(CODE_PATTERN.match(p) for p in plaintexts)
    rows = list(CreditCode.objects.values())
    assert len(rows) == 50
    stored = repr(rows)
    for plaintext in plaintexts:
        assert plaintext not in stored and plaintext.replace("-", "") not in stored
    assert {r["code_hash"] for r in rows} == {credit_codes.lookup_hash(p) for p in plaintexts}
    log = AuditLog.objects.get(action="billing.credit_codes_minted")
    assert (log.target, log.metadata["count"], log.metadata["amount_usd"]) == (batch.batch, 50, "5")
    assert not any(p in repr(log.metadata) for p in plaintexts)


def test_the_mint_csv_lists_every_code_with_its_value_once(db):
    expiry = timezone.now() + timedelta(days=30)
    batch = credit_codes.mint_codes(
        amount_nusd=2_500_000_001, count=3, max_redemptions=4, expires_at=expiry, actor=None, note="partners"
    )
    rows = list(csv.DictReader(io.StringIO(batch.csv())))
    assert [r["code"] for r in rows] == [p for _, p in batch.codes]
    assert {(r["amount_usd"], r["max_redemptions"], r["note"]) for r in rows} == {("2.500000001", "4", "partners")}


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"amount_nusd": 0, "count": 1}, "invalid_amount"),
        ({"amount_nusd": 10_001 * USD, "count": 1}, "invalid_amount"),
        ({"amount_nusd": USD, "count": 0}, "invalid_count"),
        ({"amount_nusd": USD, "count": 1001}, "invalid_count"),
        ({"amount_nusd": USD, "count": 1, "max_redemptions": 0}, "invalid_max_redemptions"),
        ({"amount_nusd": USD, "count": 1, "expires_at": timezone.now() - timedelta(seconds=1)}, "invalid_expiry"),
        ({"amount_nusd": USD, "count": 1, "note": "x" * 301}, "invalid_note"),
    ],
)
def test_bad_mints_are_refused_and_write_nothing(db, kwargs, code):
    with pytest.raises(credit_codes.CreditCodeError) as exc:
        credit_codes.mint_codes(actor=None, **kwargs)
    assert exc.value.code == code
    assert not CreditCode.objects.exists() and not AuditLog.objects.exists()


# --- redeeming -----------------------------------------------------------------------------------------


def test_redeeming_credits_the_team_with_a_ledger_entry_of_its_own_and_an_audit_row(team, owner, capsys):
    (code,) = mint(5)
    redemption = credit_codes.redeem(team, code, actor=owner, ip="192.0.2.7")
    entry = redemption.ledger_entry
    assert (entry.kind, entry.amount_nusd, entry.balance_after_nusd) == (LedgerKind.CREDIT_CODE, 5 * USD, 5 * USD)
    assert entry.memo == f"Credit code TG-…-{code[-4:]}" and code not in entry.reason
    assert balance(team) == 5 * USD
    log = AuditLog.objects.get(action="billing.credit_code_redeemed")
    assert (log.team, log.actor, log.ip, log.metadata["amount_usd"]) == (team, owner, "192.0.2.7", "5")
    assert CreditCode.objects.get().redemptions == 1
    assert find_discrepancies() == []
    call_command("check_ledger")
    assert capsys.readouterr().out.startswith("ok:")


@pytest.mark.parametrize("typed", ["{code}", "{lower}", " {nodash} ", "{nodash_noprefix}", "{with_o_for_zero}"])
def test_what_people_mistype_still_redeems(team, owner, typed):
    code = mint(1)[0]
    body = code[3:].replace("-", "")
    variants = {
        "code": code,
        "lower": code.lower(),
        "nodash": "TG" + body,
        "nodash_noprefix": body,
        "with_o_for_zero": code.replace("0", "O").replace("1", "I"),
    }
    credit_codes.redeem(team, typed.format(**variants), actor=owner)
    assert balance(team) == USD


def test_a_billing_member_may_redeem_but_a_developer_or_viewer_may_not(team, billing_user, developer, viewer):
    code = mint(1, max_redemptions=1)[0]
    for person in (developer, viewer):
        with pytest.raises(PermissionDenied):
            credit_codes.redeem(team, code, actor=person)
    assert balance(team) == 0 and CreditCode.objects.get().redemptions == 0
    credit_codes.redeem(team, code, actor=billing_user)
    assert balance(team) == USD


def test_an_outsider_cannot_redeem_into_a_team_they_are_not_in(team, outsider):
    code = mint(1)[0]
    with pytest.raises(PermissionDenied):
        credit_codes.redeem(team, code, actor=outsider)
    assert balance(team) == 0


def test_wrong_expired_used_up_and_disabled_codes_all_get_the_same_answer_and_change_nothing(
    team, owner, other_team, outsider, time_machine
):
    wrong = "TG-0000-0000-0000"
    garbage = "not a code at all"
    used_up = mint(1)[0]
    credit_codes.redeem(other_team, used_up, actor=outsider)
    soon = mint(1, expires_at=timezone.now() + timedelta(hours=1))[0]
    disabled = mint(1)[0]
    credit_codes.disable_codes(list(CreditCode.objects.filter(last4=disabled[-4:])), actor=None)
    time_machine.move_to(timezone.now() + timedelta(hours=2))
    answers = {refused(team, c, owner).message for c in (wrong, garbage, used_up, soon, disabled)}
    assert answers == {"This code is not valid."}
    assert balance(team) == 0
    assert not LedgerEntry.objects.filter(wallet__team=team).exists()
    assert AuditLog.objects.filter(action="billing.credit_code_refused", team=team).count() == 5


def test_a_team_redeems_a_code_once_and_only_that_team_is_told_it_already_did(team, owner, other_team, outsider):
    code = mint(3, max_redemptions=2)[0]
    credit_codes.redeem(team, code, actor=owner)
    again = refused(team, code, owner)
    assert (again.code, again.status, again.message) == (
        "already_redeemed",
        409,
        "Your team has already redeemed this code.",
    )
    assert balance(team) == 3 * USD
    credit_codes.redeem(other_team, code, actor=outsider)  # the second of two uses, by another team
    third = User.objects.create_user(email="carol@third.test", password="x-very-secret-1")
    third_team = create_team(name="Third", slug="third", owner=third)
    assert refused(third_team, code, third).message == "This code is not valid."  # used up: says nothing more
    assert CreditCode.objects.get().redemptions == 2
    assert find_discrepancies() == []


# --- throttling -----------------------------------------------------------------------------------------


def test_a_person_gets_ten_attempts_an_hour_even_with_a_good_code_at_the_end(team, owner, time_machine, settings):
    settings.CREDIT_CODE_ATTEMPTS_PER_TEAM_PER_HOUR = 100
    time_machine.move_to("2026-03-01 10:00:05Z", tick=False)
    good = mint(2)[0]
    for i in range(10):
        assert refused(team, f"TG-0000-0000-{i:04d}", owner).code == "invalid_code"
    throttled = refused(team, good, owner)
    assert (throttled.code, throttled.status) == ("rate_limited", 429)
    assert throttled.retry_after == 3600 - 5 and "Try again in 60 minutes" in throttled.message
    assert balance(team) == 0
    time_machine.move_to("2026-03-01 11:00:01Z", tick=False)  # a new window
    credit_codes.redeem(team, good, actor=owner)
    assert balance(team) == 2 * USD


def test_a_team_gets_twenty_attempts_an_hour_across_its_members(team, owner, admin_user, billing_user):
    for person in (owner, admin_user):
        for i in range(10):
            refused(team, f"TG-1111-0000-{i:04d}", person)
    assert refused(team, "TG-2222-0000-0000", billing_user).code == "rate_limited"  # a fresh person, same team


def test_one_teams_attempts_do_not_throttle_another(team, owner, other_team, outsider, settings):
    settings.CREDIT_CODE_ATTEMPTS_PER_USER_PER_HOUR = 100
    for i in range(20):
        refused(team, f"TG-3333-0000-{i:04d}", owner)
    code = mint(1)[0]
    credit_codes.redeem(other_team, code, actor=outsider)
    assert balance(other_team) == USD


# --- the management API ---------------------------------------------------------------------------------


def redeem_url(team) -> str:
    return f"/api/v1/teams/{team.public_id}/credit-codes/redeem/"


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_api_redeems_for_a_signed_in_member(team, owner):
    code = mint(5)[0]
    response = as_user(owner).post(redeem_url(team), {"code": code.lower()}, content_type="application/json")
    assert response.status_code == 201, response.content
    body = response.json()
    entry = LedgerEntry.objects.get(kind=LedgerKind.CREDIT_CODE)
    assert body["id"] == entry.public_id and body["code"] == f"TG-…-{code[-4:]}"
    assert (body["amount_nusd"], body["amount_usd"], body["balance_usd"]) == (5 * USD, "5", "5")


def test_the_api_answers_bad_codes_in_the_envelope_with_the_right_status(team, owner):
    client = as_user(owner)
    wrong = client.post(redeem_url(team), {"code": "TG-0000-0000-0000"}, content_type="application/json")
    assert wrong.status_code == 400
    assert wrong.json()["error"] == {"code": "invalid_code", "message": "This code is not valid.", "param": "code"}
    assert wrong.json()["request_id"].startswith("req_") and wrong["X-Request-Id"] == wrong.json()["request_id"]
    missing = client.post(redeem_url(team), {}, content_type="application/json")
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "code"
    code = mint(1)[0]
    assert client.post(redeem_url(team), {"code": code}, content_type="application/json").status_code == 201
    again = client.post(redeem_url(team), {"code": code}, content_type="application/json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_redeemed"


def test_the_api_throttles_with_429_and_retry_after(team, owner):
    client = as_user(owner)
    for i in range(10):
        client.post(redeem_url(team), {"code": f"TG-0000-0000-{i:04d}"}, content_type="application/json")
    response = client.post(redeem_url(team), {"code": mint(1)[0]}, content_type="application/json")
    assert response.status_code == 429 and response.json()["error"]["code"] == "rate_limited"
    assert 0 < int(response["Retry-After"]) <= 3600
    assert balance(team) == 0


def test_another_teams_id_is_404_and_a_developer_is_403(team, owner, developer, outsider, other_team):
    code = mint(1)[0]
    body = {"code": code}
    assert as_user(outsider).post(redeem_url(team), body, content_type="application/json").status_code == 404
    denied = as_user(developer).post(redeem_url(team), body, content_type="application/json")
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"
    assert Client().post(redeem_url(team), body, content_type="application/json").status_code in (401, 403)
    assert balance(team) == 0 and CreditCode.objects.get().redemptions == 0


def test_a_keys_write_key_redeems_with_its_creators_role_but_a_test_key_cannot(team, owner, developer, other_team):
    code = mint(4, max_redemptions=1)[0]
    test_key = mint_key(team=team, name="sandbox", mode="test", scopes=["keys:write"], created_by=owner)
    devs_key = mint_key(team=team, name="dev automation", scopes=["keys:write"], created_by=developer)
    live_key = mint_key(team=team, name="automation", scopes=["keys:write"], created_by=owner)
    for refused_key, status in ((test_key, 403), (devs_key, 403)):
        client = Client(HTTP_AUTHORIZATION=f"Bearer {refused_key.plaintext}")
        assert client.post(redeem_url(team), {"code": code}, content_type="application/json").status_code == status
    live = Client(HTTP_AUTHORIZATION=f"Bearer {live_key.plaintext}")
    assert live.post(redeem_url(other_team), {"code": code}, content_type="application/json").status_code == 404
    assert live.post(redeem_url(team), {"code": code}, content_type="application/json").status_code == 201
    log = AuditLog.objects.get(action="billing.credit_code_redeemed")
    assert log.actor_label == f"api key {live_key.key.masked}"
    assert balance(team) == 4 * USD


# --- the Billing page ------------------------------------------------------------------------------------


def test_the_billing_page_redeems_a_code_and_shows_it_in_the_ledger(team, owner):
    code = mint(7)[0]
    client = as_user(owner)
    response = client.post(f"/t/{team.public_id}/billing/redeem/", {"code": code}, follow=True)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Code redeemed: $7.00 added. Your balance is $7.00." in html
    assert f"Credit code TG-…-{code[-4:]}" in html and "Credit code</span>" in html  # memo and kind badge
    assert code not in html


def test_the_billing_page_shows_a_refusal_under_the_field(team, owner):
    response = as_user(owner).post(f"/t/{team.public_id}/billing/redeem/", {"code": "TG-0000-0000-0000"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "This code is not valid." in html and 'data-testid="redeem-error"' in html and "<h1>Billing</h1>" in html
    empty = as_user(owner).post(f"/t/{team.public_id}/billing/redeem/", {"code": ""})
    assert empty.status_code == 400 and "Enter the code you were given." in empty.content.decode()


def test_the_billing_page_says_how_long_to_wait_when_throttled(team, owner):
    client = as_user(owner)
    for i in range(10):
        client.post(f"/t/{team.public_id}/billing/redeem/", {"code": f"TG-0000-0000-{i:04d}"})
    response = client.post(f"/t/{team.public_id}/billing/redeem/", {"code": "TG-0000-0000-0000"})
    assert (
        response.status_code == 429 and "Too many attempts to redeem a code. Try again in" in response.content.decode()
    )


# --- the admin ---------------------------------------------------------------------------------------------


@pytest.fixture
def operator(db) -> User:
    return User.objects.create_superuser(email="root@tollgate.test", password="x-very-secret-1")


def test_an_operator_mints_codes_in_the_admin_and_gets_them_once_as_a_csv(client, operator, team, owner):
    client.force_login(operator)
    form = client.get("/admin/billing/creditcode/add/")
    assert form.status_code == 200 and b"the only time they are shown" in form.content
    response = client.post(
        "/admin/billing/creditcode/add/",
        {"amount_usd": "12.5", "count": "3", "max_redemptions": "2", "expires_at": "", "note": "conference"},
    )
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"] and response["Cache-Control"].startswith("no-store")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 3 and {r["amount_usd"] for r in rows} == {"12.5"}
    assert CreditCode.objects.filter(max_redemptions=2, note="conference", created_by=operator).count() == 3
    listing = client.get("/admin/billing/creditcode/").content.decode()
    assert "$12.50" in listing and "0 of 2" in listing and not any(r["code"] in listing for r in rows)
    credit_codes.redeem(team, rows[0]["code"], actor=owner)
    assert balance(team) == 12_500_000_000


def test_the_admin_mint_form_refuses_bad_input_and_mints_nothing(client, operator):
    client.force_login(operator)
    for data in (
        {"amount_usd": "0", "count": "1", "max_redemptions": "1"},
        {"amount_usd": "5", "count": "5000", "max_redemptions": "1"},
        {"amount_usd": "5", "count": "1", "max_redemptions": "1", "expires_at": "2001-01-01T00:00"},
        {"amount_usd": "0.0000000001", "count": "1", "max_redemptions": "1"},
    ):
        response = client.post("/admin/billing/creditcode/add/", data)
        assert response.status_code == 400 and b"errorlist" in response.content, data
    assert not CreditCode.objects.exists()


def test_an_operator_disables_codes_and_they_stop_working(client, operator, team, owner):
    code = mint(1)[0]
    client.force_login(operator)
    client.post(
        "/admin/billing/creditcode/",
        {"action": "disable_action", "_selected_action": [CreditCode.objects.get().pk]},
    )
    assert CreditCode.objects.get().disabled_at is not None
    assert AuditLog.objects.filter(action="billing.credit_code_disabled").count() == 1
    assert refused(team, code, owner).message == "This code is not valid."


def test_staff_without_the_add_permission_cannot_mint(client, db):
    staff = User.objects.create_user(email="support@tollgate.test", password="x-very-secret-1", is_staff=True)
    client.force_login(staff)
    response = client.post("/admin/billing/creditcode/add/", {"amount_usd": "5", "count": "1", "max_redemptions": "1"})
    assert response.status_code == 403
    assert not CreditCode.objects.exists()


def test_the_openapi_schema_describes_the_redeem_endpoint(db, client):
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json()
    operation = schema["paths"]["/api/v1/teams/{team_public_id}/credit-codes/redeem/"]["post"]
    assert operation["summary"] == "Redeem a credit code for the team"
    assert "201" in operation["responses"]
