"""The operator's books: revenue, upstream cost and margin by day, model, route and team, equal to the sum of the
receipts to the nano-dollar, the same in `manage.py books`, on the staff-only Books page and in its CSV."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Sum
from django.utils import timezone

from accounts.keys import mint_key
from accounts.models import User
from billing import books
from billing.models import LedgerEntry, LedgerKind, Receipt
from billing.money import usd
from billing.services import grant_credit
from tests.asgi import V1
from tests.billing.conftest import USD


@pytest.fixture
def traffic(team, owner, other_team, outsider, settings):
    """Real receipts from two teams: chat (plain and streamed), embeddings, an image, a failure, a test request."""
    from django.core.management import call_command as run

    from tests.gateway.conftest import reset_gateway_state

    settings.DB_THREAD_SENSITIVE = True
    reset_gateway_state()
    run("seed_catalog", quiet=True)
    for t in (team, other_team):
        grant_credit(t, amount_nusd=10 * USD, reason="test credit")
    acme = V1(mint_key(team=team, name="acme", created_by=owner).plaintext)
    evil = V1(mint_key(team=other_team, name="evil", created_by=outsider).plaintext)
    chat = {"model": "demo-chat", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 20}
    assert acme.post("/chat/completions", chat).status_code == 200
    assert acme.post("/chat/completions", {**chat, "stream": True}).status_code == 200
    assert acme.post("/embeddings", {"model": "demo-embed", "input": "a few words"}).status_code == 200
    assert evil.post("/chat/completions", {**chat, "model": "demo-chat-mini"}).status_code == 200
    assert evil.post("/images/generations", {"model": "demo-image", "prompt": "x"}).status_code == 200
    assert evil.post("/chat/completions", {**chat, "max_tokens": 10**6}).status_code == 400  # refused: no receipt
    sandbox = V1(mint_key(team=team, name="sandbox", mode="test", created_by=owner).plaintext)
    assert sandbox.post("/chat/completions", chat).status_code == 200  # test: left out of the books
    yield
    reset_gateway_state()


def today():
    return timezone.now().date()


def live_sums() -> tuple[int, int, int]:
    live = Receipt.objects.filter(is_test=False)
    charged = sum(r.charged_nusd for r in live)
    return live.count(), charged, live.aggregate(s=Sum("upstream_cost_nusd"))["s"] or 0


def test_the_books_are_the_sum_of_the_receipts_in_every_breakdown(traffic):
    report = books.books(today() - timedelta(days=2), today())
    requests, revenue, cost = live_sums()
    assert (report.total.requests, report.total.revenue_nusd, report.total.cost_nusd) == (requests, revenue, cost)
    assert revenue > cost > 0 and report.total.margin_nusd == revenue - cost
    # revenue is exactly what the ledger charged
    charges = LedgerEntry.objects.filter(kind=LedgerKind.CHARGE).aggregate(s=Sum("amount_nusd"))["s"]
    assert revenue == -charges
    for group, lines in report.groups():
        assert sum(line.revenue_nusd for line in lines) == revenue, group
        assert sum(line.cost_nusd for line in lines) == cost, group
        assert sum(line.requests for line in lines) == requests, group
    assert {line.key for line in report.model} == {"demo-chat", "demo-chat-mini", "demo-embed", "demo-image"}
    assert {line.key for line in report.route} >= {"simulator:demo-chat", "simulator:demo-image"}
    assert len(report.team) == 2 and [d.key for d in report.day][-1] == today().isoformat()
    assert report.uncosted == 0


def test_a_range_without_receipts_is_all_zeros(traffic):
    report = books.books(today() - timedelta(days=30), today() - timedelta(days=10))
    assert report.total.requests == 0 and len(report.day) == 21 and report.model == []


def test_the_books_command_prints_the_same_figures(traffic, capsys):
    call_command(
        "books", "--since", (today() - timedelta(days=2)).isoformat(), "--until", today().isoformat(), "--json"
    )
    printed = json.loads(capsys.readouterr().out)
    report = books.books(today() - timedelta(days=2), today())
    assert printed["total"]["revenue_nusd"] == report.total.revenue_nusd
    assert printed["total"]["upstream_cost_nusd"] == report.total.cost_nusd
    assert printed["total"]["margin_nusd"] == report.total.margin_nusd
    assert [line["margin_nusd"] for line in printed["team"]] == [line.margin_nusd for line in report.team]
    call_command("books")  # this month, as tables
    text = capsys.readouterr().out
    assert usd(report.total.revenue_nusd) in text and usd(report.total.margin_nusd) in text and "demo-image" in text


@pytest.mark.parametrize(
    "args",
    [["--since", "yesterday"], ["--since", "2026-05-02", "--until", "2026-05-01"], ["--by", "colour"]],
)
def test_the_books_command_refuses_bad_arguments(db, args):
    with pytest.raises(CommandError):
        call_command("books", *args)


@pytest.fixture
def staff(client, db):
    client.force_login(User.objects.create_user(email="ops@tollgate.test", password="x-very-secret-1", is_staff=True))
    return client


def _number(page: str, testid: str) -> str:
    return re.search(rf'data-testid="{testid}">([^<]+)<', page).group(1)


def test_the_books_page_shows_the_same_figures_with_charts(traffic, staff):
    page = staff.get("/operator/books/").content.decode()
    report = books.books(today().replace(day=1), today())
    assert _number(page, "books-revenue") == usd(report.total.revenue_nusd)
    assert _number(page, "books-cost") == usd(report.total.cost_nusd)
    assert _number(page, "books-margin") == usd(report.total.margin_nusd)
    assert _number(page, "books-requests") == str(report.total.requests)
    assert page.count('<svg class="chart') >= 4 and "cdn" not in page.lower()
    for line in report.team:
        assert line.label in page and usd(line.margin_nusd) in page


def test_the_books_csv_has_exact_amounts_that_add_up(traffic, staff):
    since = (today() - timedelta(days=2)).isoformat()
    response = staff.get("/operator/books.csv", {"since": since, "until": today().isoformat()})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    total = next(r for r in rows if r["group"] == "total")
    _requests, revenue, cost = live_sums()
    assert (int(total["revenue_nusd"]), int(total["upstream_cost_nusd"])) == (revenue, cost)
    for group in books.GROUPS:
        assert sum(int(r["margin_nusd"]) for r in rows if r["group"] == group) == revenue - cost
    assert all(r["revenue_usd"] for r in rows) and "." in total["revenue_usd"]


def test_a_bad_range_on_the_books_page_is_a_400_naming_it(staff):
    response = staff.get("/operator/books/", {"since": "2026-05-02", "until": "2026-05-01"})
    assert response.status_code == 400 and "before the start" in response.content.decode()


def test_only_staff_see_the_books(traffic, client, owner, outsider):
    assert client.get("/operator/books/").status_code == 302  # log in first
    for person in (owner, outsider):  # a team owner is a customer, not an operator
        client.force_login(person)
        assert client.get("/operator/books/").status_code == 404
        assert client.get("/operator/books.csv").status_code == 404
        assert "Books" not in client.get(f"/t/{person.memberships.get().team.public_id}/").content.decode()
