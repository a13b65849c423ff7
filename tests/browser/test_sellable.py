"""In Chromium at 1280 px and 390 px: what matters is on screen (key actions and status, costs, balances
after), every action is reachable on a phone, test requests look like tests, credit comes from a code
without Stripe, and the small things (Copy keeps its icon, the live badge) behave."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.keys import KeyActor, mint_key, rotate_key
from accounts.models import User
from accounts.services import invite_member
from billing import credit_codes
from billing.adjustments import adjust_balance
from billing.models import Wallet
from billing.services import grant_credit
from tests.browser.conftest import PASSWORD, log_in, shot
from tests.dashboard.conftest import make_receipt

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
LONG_NAME = "prod-backend-eu-west-1"


def context_at(browser, live, viewport, **extra):
    context = browser.new_context(viewport=viewport, base_url=live.url, **extra)
    context.set_default_timeout(10_000)
    return context


def seed(team, owner, developer) -> dict:
    grant_credit(team, amount_nusd=5_000_000_000, reason="operator credit", memo="Welcome credit")
    live_key = mint_key(
        team=team,
        name=LONG_NAME,
        created_by=owner,
        scopes=["inference", "models:read", "billing:read", "keys:write"],
        rpm_limit=30,
        monthly_spend_cap_nusd=20_000_000_000,
        allowed_models=["demo-chat"],
        ip_allowlist=["203.0.113.0/24"],
    ).key
    rotating = mint_key(team=team, name="billing-worker-blue-green", created_by=developer).key
    rotate_key(rotating, actor=KeyActor.system(team, "test"), grace_seconds=86_400)
    test_key = mint_key(team=team, name="sandbox-ci", mode="test", created_by=developer).key
    receipts = [  # costs with every digit: the widest a cost cell gets
        make_receipt(team, live_key, request_id="req_1", prompt_tokens=9_876_543, input_price_nusd=123_457),
        make_receipt(team, live_key, request_id="req_2", prompt_tokens=1_234, completion_tokens=987),
    ]
    test_receipt = make_receipt(team, test_key, is_test=True, mode="test", request_id="req_test")
    adjust_balance(team, -1_234_567_891, actor=None, reason="duplicate grant", memo="Correction")
    return {"keys": [live_key, rotating, test_key], "receipts": receipts, "test_receipt": test_receipt}


def no_sideways_scroll(page) -> None:
    text = page.inner_text("body")
    assert "{#" not in text and "{%" not in text, f"{page.url} shows template source"
    width = page.evaluate("window.innerWidth")
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{page.url}: the page is {scroll}px wide in a {width}px window"


def stats_fit_their_cards(page) -> None:
    """A long exact amount ($1,219.329164451) stays inside its card."""
    for i, (scroll, client) in enumerate(
        page.eval_on_selector_all(".stat .v", "els => els.map(e => [e.scrollWidth, e.clientWidth])")
    ):
        assert scroll <= client + 1, f"{page.url}: stat #{i} overflows its card by {scroll - client}px"


def nothing_scrolls_sideways_inside(page, selector: str) -> None:
    """A table's own scroller does not hide columns either."""
    for i, (scroll, client) in enumerate(
        page.eval_on_selector_all(selector, "els => els.map(e => [e.scrollWidth, e.clientWidth])")
    ):
        assert scroll <= client + 1, f"{page.url}: {selector} #{i} hides {scroll - client}px behind a scroll"


def on_screen(page, locator) -> None:
    """Inside the window horizontally, visible, without any sideways scrolling."""
    expect(locator).to_be_visible()
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    width = page.evaluate("window.innerWidth")
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (locator, box, width)


def test_at_1280_px_key_actions_and_status_costs_and_balances_after_are_on_screen(
    browser, live, owner, team, developer
):
    data = seed(team, owner, developer)
    context = context_at(browser, live, LAPTOP)
    page = context.new_page()
    try:
        log_in(page, owner.email)
        base = f"/t/{team.public_id}"

        page.goto(f"{base}/keys/")
        shot(page, "laptop-keys", full_page=False)
        no_sideways_scroll(page)
        nothing_scrolls_sideways_inside(page, ".table-wrap")
        for key in data["keys"]:
            row = page.locator(f'tr[data-key="{key.public_id}"]')
            on_screen(page, row.locator('[data-col="status"] .badge'))
            for action in ("Limits", "Rotate", "Revoke"):
                on_screen(page, row.get_by_role(row_role(action), name=action))
        expect(page.locator(f'tr[data-key="{data["keys"][1].public_id}"]')).to_contain_text("rotating")

        page.goto(f"{base}/")
        no_sideways_scroll(page)
        stats_fit_their_cards(page)
        nothing_scrolls_sideways_inside(page, "#latest .table-wrap")
        for receipt in (*data["receipts"], data["test_receipt"]):
            on_screen(page, page.locator(f'#latest tr[data-receipt="{receipt.public_id}"] [data-col="cost"]'))
        shot(page, "laptop-overview", full_page=False)

        page.goto(f"{base}/billing/")
        no_sideways_scroll(page)
        nothing_scrolls_sideways_inside(page, "#ledger .table-wrap")
        expect(page.locator('#ledger-table [data-col="balance-after"]')).to_have_count(2)
        for cell in page.locator('#ledger-table [data-col="balance-after"]').all():
            on_screen(page, cell)
        expect(page.get_by_text("Welcome credit")).to_be_visible()
        shot(page, "laptop-billing")
    finally:
        context.close()


def row_role(action: str) -> str:
    return "link" if action == "Limits" else "button"


def test_at_1280_px_the_admin_shows_each_receipts_cost(browser, live, owner, team, developer):
    data = seed(team, owner, developer)
    User.objects.filter(pk=owner.pk).update(is_staff=True, is_superuser=True)
    context = context_at(browser, live, LAPTOP)
    page = context.new_page()
    try:
        page.goto("/admin/login/")
        page.get_by_label("Email").fill(owner.email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.goto("/admin/billing/receipt/")
        shot(page, "laptop-admin-receipts", full_page=False)
        no_sideways_scroll(page)
        from billing.money import usd

        cost = usd(data["receipts"][0].total_cost_nusd)
        cell = page.locator("#result_list td.field-total_cost", has_text=cost).first
        on_screen(page, cell)
        scroller = page.locator("#changelist .results")
        assert cell.bounding_box()["x"] + cell.bounding_box()["width"] <= (
            scroller.bounding_box()["x"] + scroller.bounding_box()["width"]
        )  # not behind the table's own scroll either
    finally:
        context.close()


def test_at_390_px_every_key_action_is_reachable_and_test_requests_keep_their_marker(
    browser, live, owner, team, developer
):
    data = seed(team, owner, developer)
    context = context_at(browser, live, PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        log_in(page, owner.email)
        base = f"/t/{team.public_id}"
        page.goto(f"{base}/keys/")
        no_sideways_scroll(page)
        for key in data["keys"]:
            row = page.locator(f'tr[data-key="{key.public_id}"]')
            on_screen(page, row.locator('[data-col="status"] .badge'))
            for action in ("Limits", "Rotate", "Revoke"):
                on_screen(page, row.get_by_role(row_role(action), name=action))
        shot(page, "phone-keys-actions")
        page.locator(f'tr[data-key="{data["keys"][0].public_id}"]').get_by_role("button", name="Rotate").tap()
        expect(page.locator(f"#rotate-{data['keys'][0].public_id}")).to_be_visible()
        shot(page, "phone-keys-rotate-dialog", full_page=False)
        page.locator("dialog[open]").get_by_role("button", name="Cancel").tap()

        invite_member(actor=owner, team=team, email="new.colleague@acme.test", role="viewer")
        page.goto(f"{base}/members/")
        no_sideways_scroll(page)
        member = page.locator(f'tr[data-member="{developer.email}"]')
        on_screen(page, member.get_by_role("button", name="Change"))
        on_screen(page, member.get_by_role("button", name="Remove"))
        invitation = page.locator('tr[data-invitation="new.colleague@acme.test"]')
        on_screen(page, invitation.get_by_role("button", name="Resend"))
        on_screen(page, invitation.get_by_role("button", name="Revoke"))
        shot(page, "phone-members-actions")

        page.goto(f"{base}/billing/")
        no_sideways_scroll(page)
        on_screen(page, page.get_by_role("button", name="Redeem"))
        on_screen(page, page.get_by_role("button", name="Save auto-recharge"))
        for cell in page.locator('#ledger-table [data-col="balance-after"]').all():
            on_screen(page, cell)
        shot(page, "phone-billing-ledger")

        test_id = data["test_receipt"].public_id
        for path in ("", "receipts/", "usage/?mode=test"):
            page.goto(f"{base}/{path}")
            no_sideways_scroll(page)
            on_screen(page, page.locator(f'tr[data-receipt="{test_id}"] [data-testid="test-marker"]').first)
        shot(page, "phone-usage-test-mode")
        page.goto(f"{base}/receipts/{test_id}/")
        expect(page.get_by_test_id("not-charged")).to_have_text("Test request: nothing was charged")
        shot(page, "phone-test-receipt")
    finally:
        context.close()


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["1280", "390"])
def test_key_names_do_not_break_at_hyphens(browser, live, owner, team, developer, viewport):
    data = seed(team, owner, developer)
    context = context_at(browser, live, viewport)
    page = context.new_page()
    try:
        log_in(page, owner.email)
        page.goto(f"/t/{team.public_id}/keys/")
        name = page.locator(f'tr[data-key="{data["keys"][0].public_id}"] .keyname')
        expect(name).to_have_text(LONG_NAME)
        lines = name.evaluate(
            "el => { const r = document.createRange(); r.selectNodeContents(el);"
            " return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size; }"
        )
        assert lines == 1, f"{LONG_NAME!r} wraps onto {lines} lines"
    finally:
        context.close()


def test_without_stripe_a_customer_redeems_a_credit_code_on_the_billing_page(page, live, owner, team, settings):
    settings.STRIPE_SECRET_KEY = ""
    ((_, code),) = credit_codes.mint_codes(amount_nusd=10 * 10**9, count=1, actor=None).codes
    log_in(page, owner.email)
    page.goto(f"/t/{team.public_id}/billing/")
    expect(page.get_by_test_id("card-topups-off")).to_have_text(
        "Card top-ups are not enabled on this installation. Redeem a credit code, or ask your administrator."
    )
    expect(page.get_by_role("button", name="Save auto-recharge")).to_be_disabled()
    expect(page.get_by_test_id("auto-recharge-unavailable")).to_contain_text("card payments are not enabled")
    assert "STRIPE" not in page.content()
    shot(page, "billing-no-stripe")

    page.get_by_label("Redeem a credit code").fill("TG-0000-0000-0000")
    page.get_by_role("button", name="Redeem").click()
    expect(page.get_by_test_id("redeem-error")).to_have_text("This code is not valid.")
    shot(page, "billing-redeem-refused")

    page.get_by_label("Redeem a credit code").fill(code.lower().replace("-", " "))
    page.get_by_role("button", name="Redeem").click()
    expect(page.get_by_text("Code redeemed: $10.00 added. Your balance is $10.00.")).to_be_visible()
    expect(page.get_by_test_id("balance")).to_have_text("$10.00")
    expect(page.locator("#ledger-table")).to_contain_text(f"Credit code TG-…-{code[-4:]}")
    shot(page, "billing-redeemed")
    assert Wallet.objects.get(team=team).balance_nusd == 10 * 10**9


def test_auto_recharge_errors_show_inline_and_a_good_save_says_saved(page, live, owner, team, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_never_called"  # saving settings does not call Stripe
    Wallet.objects.filter(team=team).update(stripe_customer_id="cus_1", stripe_payment_method_id="pm_1")
    log_in(page, owner.email)
    page.goto(f"/t/{team.public_id}/billing/")
    form = page.locator("#auto-recharge")
    form.get_by_label("Charge the saved card automatically").check()
    form.get_by_label("When available credit falls below (USD)").fill("-3")
    form.get_by_label("Add (USD)").fill("2")
    form.get_by_role("button", name="Save auto-recharge").click()
    expect(form.get_by_text("The threshold cannot be negative.")).to_be_visible()
    expect(form.get_by_text("Add at least $5 each time.")).to_be_visible()
    expect(page.get_by_role("heading", name="Billing", exact=True)).to_be_visible()  # still the Billing page
    shot(page, "billing-auto-recharge-errors")
    form.get_by_label("When available credit falls below (USD)").fill("7.50")
    form.get_by_label("Add (USD)").fill("25")
    form.get_by_role("button", name="Save auto-recharge").click()
    expect(page.get_by_test_id("auto-recharge-saved")).to_have_text("✓ Saved")
    assert page.url.endswith(f"/t/{team.public_id}/billing/")  # a reload is a GET, not a re-POST
    wallet = Wallet.objects.get(team=team)
    assert (wallet.auto_recharge_enabled, wallet.auto_recharge_threshold_nusd) == (True, 7_500_000_000)
    shot(page, "billing-auto-recharge-saved")


def test_the_copy_button_keeps_its_icon_and_the_live_badge_reads_live_updates(browser, live, owner, team):
    context = context_at(browser, live, LAPTOP)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    page = context.new_page()
    try:
        log_in(page, owner.email)
        page.goto(f"/t/{team.public_id}/")
        expect(page.locator("[data-live-status]")).to_have_text("Live updates")
        page.goto(f"/t/{team.public_id}/keys/")
        page.get_by_role("button", name="Create your first key").click()
        page.locator("#create-key").get_by_label("Name").fill("laptop")
        page.locator("#create-key").get_by_role("button", name="Create key").click()
        copy = page.locator("#secret-dialog [data-copy]")  # by what it is: its name changes while it works
        expect(copy.locator("svg")).to_have_count(1)
        copy.click()
        expect(copy).to_have_text("Copied")
        expect(copy.locator("svg")).to_have_count(1)
        shot(page, "copy-copied", full_page=False)
        expect(copy).to_have_text("Copy", timeout=3_000)
        expect(copy.locator("svg")).to_have_count(1)
        copy.click()  # and again: still one icon, the words come back
        expect(copy).to_have_text("Copied")
        expect(copy.locator("svg")).to_have_count(1)
    finally:
        context.close()


def test_the_usage_chart_labels_today_in_the_browser(page, live, owner, team):
    key = mint_key(team=team, name="prod", created_by=owner).key
    make_receipt(team, key, created_at=timezone.now() - timedelta(minutes=1))
    log_in(page, owner.email)
    page.goto(f"/t/{team.public_id}/usage/")
    expect(page.locator("svg.chart text", has_text="Today").first).to_be_visible()


def admin_log_in(page, user) -> None:
    User.objects.filter(pk=user.pk).update(is_staff=True, is_superuser=True)
    page.goto("/admin/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_an_operator_adjusts_a_balance_and_the_customer_sees_only_the_memo(browser, live, owner, team, outsider):
    grant_credit(team, amount_nusd=2 * 10**9, reason="seed")
    operator_ctx, customer_ctx = context_at(browser, live, LAPTOP), context_at(browser, live, LAPTOP)
    try:
        admin = operator_ctx.new_page()
        admin_log_in(admin, outsider)  # an operator who is not in the team
        admin.goto("/admin/billing/wallet/?q=acme")
        admin.locator("#result_list input.action-select").first.check()
        admin.locator("select[name=action]").select_option("adjust_balance_action")
        admin.get_by_role("button", name="Go").click()
        admin.get_by_label("Amount (USD)").fill("-5")
        admin.get_by_label("Memo for the customer").fill("Refund of duplicate credit")
        admin.get_by_label("Internal note").fill("ticket 981: finance approved")
        admin.get_by_role("button", name="Adjust balance").click()
        expect(admin.locator(".messagelist")).to_contain_text("Allow a negative balance")
        assert Wallet.objects.get(team=team).balance_nusd == 2 * 10**9
        shot(admin, "admin-adjust-refused", full_page=False)

        admin.goto("/admin/billing/wallet/?q=acme")
        admin.locator("#result_list input.action-select").first.check()
        admin.locator("select[name=action]").select_option("adjust_balance_action")
        admin.get_by_role("button", name="Go").click()
        admin.get_by_label("Amount (USD)").fill("-5")
        admin.get_by_label("Memo for the customer").fill("Refund of duplicate credit")
        admin.get_by_label("Internal note").fill("ticket 981: finance approved")
        admin.get_by_label("Allow a negative balance").check()
        shot(admin, "admin-adjust-form", full_page=False)
        admin.get_by_role("button", name="Adjust balance").click()
        expect(admin.locator(".messagelist")).to_contain_text("Adjusted 1 wallet(s) by -$5.00.")
        assert Wallet.objects.get(team=team).balance_nusd == -3 * 10**9

        customer = customer_ctx.new_page()
        log_in(customer, owner.email)
        customer.goto(f"/t/{team.public_id}/billing/")
        expect(customer.locator("#ledger-table")).to_contain_text("Refund of duplicate credit")
        expect(customer.get_by_test_id("balance")).to_have_text("-$3.00")
        text = customer.inner_text("body")
        assert outsider.email not in text and "ticket 981" not in text
        shot(customer, "billing-after-adjustment")
    finally:
        operator_ctx.close()
        customer_ctx.close()


def test_an_operator_mints_credit_codes_and_downloads_them_once(browser, live, owner, team):
    context = context_at(browser, live, LAPTOP, accept_downloads=True)
    page = context.new_page()
    try:
        admin_log_in(page, owner)
        page.goto("/admin/billing/creditcode/")
        page.get_by_role("link", name="Add credit code").click()
        page.get_by_label("Amount per code (USD)").fill("15")
        page.get_by_label("How many codes").fill("2")
        page.get_by_label("Note").fill("meetup")
        shot(page, "admin-mint-codes", full_page=False)
        with page.expect_download() as download:
            page.get_by_role("button", name="Mint and download the CSV").click()
        csv_text = Path(download.value.path()).read_text(encoding="utf-8")
        codes = [line.split(",")[0] for line in csv_text.splitlines()[1:]]
        assert len(codes) == 2 and all(c.startswith("TG-") for c in codes)
        page.goto("/admin/billing/creditcode/")
        listing = page.inner_text("#result_list")
        assert "$15.00" in listing and not any(c in listing for c in codes)  # never shown again
        shot(page, "admin-credit-codes", full_page=False)
        credit_codes.redeem(team, codes[0], actor=owner)
        assert Wallet.objects.get(team=team).balance_nusd == 15 * 10**9
    finally:
        context.close()
