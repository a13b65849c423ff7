"""In the browser: an owner creates a project with a budget, puts a key in it with a default max cost, and reads
the project's page; an operator reads the Books page (charts and numbers) and downloads its CSV."""

from __future__ import annotations

import httpx
import pytest
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import expect

from accounts.keys import mint_key
from accounts.models import ApiKey, Project, User
from billing import books
from billing.money import exact, usd
from billing.services import grant_credit
from tests.browser.conftest import PASSWORD, log_in, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_owner_budgets_a_project_and_gives_it_a_key(page, owner, team):
    mint_key(team=team, name="mobile backend", created_by=owner)
    log_in(page, owner.email)
    page.get_by_role("link", name="Projects").click()
    expect(page.get_by_role("heading", name="Projects", exact=True)).to_be_visible()
    page.get_by_role("button", name="Create project").first.click()
    dialog = page.get_by_role("dialog", name="Create a project")
    dialog.get_by_label("Name").fill("Mobile app")
    dialog.get_by_label("Monthly budget (USD)").fill("12.5")
    dialog.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("heading", name="Mobile app")).to_be_visible()
    expect(page.get_by_test_id("project-budget")).to_have_text("$12.50")
    project = Project.objects.get(name="Mobile app")
    assert project.monthly_budget_nusd == 12_500_000_000

    page.get_by_role("link", name="API keys", exact=True).click()
    page.get_by_role("link", name="Limits").first.click()
    page.get_by_label("Project").select_option(label="Mobile app")
    page.get_by_label("Default max cost per request (USD)").fill("0.02")
    page.get_by_role("button", name="Save limits").click()
    expect(page.get_by_test_id("key-project")).to_have_text("Mobile app")
    expect(page.get_by_test_id("key-max-cost")).to_contain_text("$0.02")
    key = ApiKey.objects.get(name="mobile backend")
    assert (key.project_id, key.max_cost_per_request_nusd) == (project.pk, 20_000_000)
    shot(page, "page-keys-with-project")
    page.get_by_test_id("key-project").click()
    expect(page.get_by_text("mobile backend")).to_be_visible()
    shot(page, "page-project")


def test_an_operator_reads_the_books_and_downloads_them(page, live, owner, team, settings):
    from tests.gateway.conftest import reset_gateway_state

    reset_gateway_state()
    call_command("seed_catalog", quiet=True)
    grant_credit(team, amount_nusd=5_000_000_000, reason="credit")
    key = mint_key(team=team, name="prod", created_by=owner).plaintext
    for _ in range(3):  # real requests to the live server (Playwright's loop runs in this thread)
        reply = httpx.post(
            f"{live.url}/v1/chat/completions",
            json={"model": "demo-chat", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {key}"},
            timeout=20,
        )
        assert reply.status_code == 200
    from billing.settlement import unsettled

    assert unsettled.wait(timeout=10)
    User.objects.create_user(email="ops@tollgate.test", password=PASSWORD, is_staff=True)
    from accounts.services import create_team

    create_team(name="Ops", slug="ops", owner=User.objects.get(email="ops@tollgate.test"))
    log_in(page, "ops@tollgate.test")
    page.get_by_role("link", name="Books").click()
    expect(page.get_by_role("heading", name="Books", exact=True)).to_be_visible()
    today = timezone.now().date()
    report = books.books(today.replace(day=1), today)  # what the page shows by default: this month
    expect(page.get_by_test_id("books-revenue")).to_have_text(usd(report.total.revenue_nusd))
    expect(page.get_by_test_id("books-margin")).to_have_text(usd(report.total.margin_nusd))
    expect(page.locator("svg.chart").first).to_be_visible()
    expect(page.get_by_test_id("books-team")).to_contain_text("Acme")
    shot(page, "page-books")
    with page.expect_download() as download:
        page.get_by_test_id("books-csv").click()
    with open(download.value.path(), encoding="utf-8") as downloaded:
        text = downloaded.read()
    assert text.startswith("group,key,label,requests")
    assert f"total,total,Total,3,{exact(report.total.revenue_nusd)},{exact(report.total.cost_nusd)}," in text
    reset_gateway_state()
