"""Usage totals, CSV and the receipt page: integer sums that match the receipts exactly."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.keys import mint_key
from billing.models import LedgerEntry
from dashboard.usage import usage_report
from tests.dashboard.conftest import client_for, make_receipt

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(team, owner):
    a = mint_key(team=team, name="alpha", created_by=owner).key
    b = mint_key(team=team, name="beta", created_by=owner).key
    now = timezone.now()
    rows = [
        make_receipt(team, a, prompt_tokens=7, completion_tokens=3, input_price_nusd=333, output_price_nusd=777),
        make_receipt(
            team,
            b,
            model_requested="demo-chat-mini",
            prompt_tokens=1,
            completion_tokens=1,
            input_price_nusd=1,
            output_price_nusd=1,
        ),
        make_receipt(
            team,
            a,
            prompt_tokens=5,
            cached_tokens=4,
            cached_price_nusd=11,
            completion_tokens=0,
            input_price_nusd=333,
            output_price_nusd=777,
            created_at=now - timedelta(days=3),
        ),
        make_receipt(team, a, status="failed", prompt_tokens=0, completion_tokens=0),
    ]
    make_receipt(team, a, is_test=True, prompt_tokens=1000)  # test receipts are their own view
    make_receipt(team, a, created_at=now - timedelta(days=40))  # out of range
    return rows


def test_usage_totals_equal_the_sum_of_the_receipts_in_range(team, history):
    today = timezone.localdate()
    report = usage_report(team, today - timedelta(days=29), today)
    assert report.total.cost_nusd == sum(r.total_cost_nusd for r in history)
    assert report.total.requests == 4
    assert report.total.tokens == sum(r.prompt_tokens + r.cached_tokens + r.completion_tokens for r in history)
    assert sum(d.cost_nusd for d in report.days) == report.total.cost_nusd
    assert sum(m.cost_nusd for m in report.by_model) == report.total.cost_nusd
    assert sum(k.cost_nusd for k in report.by_key) == report.total.cost_nusd
    assert [k.label for k in report.by_key] == ["alpha", "beta"]
    assert len(report.days) == 30


def test_the_usage_page_shows_the_exact_total_with_six_decimals(owner, team, history):
    response = client_for(owner).get(f"/t/{team.public_id}/usage/?range=30")
    total = sum(r.total_cost_nusd for r in history)
    assert total == 7 * 333 + 3 * 777 + 2 + 5 * 333 + 4 * 11 == 6_373
    html = response.content.decode()
    assert "$0.000006373" in html  # every nano-dollar shown, never rounded to $0.00
    assert html.count('<svg class="chart') == 5


def test_the_usage_page_has_an_empty_state(owner, team):
    html = client_for(owner).get(f"/t/{team.public_id}/usage/").content.decode()
    assert "No usage in this range" in html


def test_the_csv_has_every_filtered_receipt_with_exact_amounts(owner, team, history):
    since = (timezone.localdate() - timedelta(days=7)).isoformat()
    response = client_for(owner).get(f"/t/{team.public_id}/receipts.csv?model=demo-chat&mode=live&start={since}")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    expected = [r for r in history if r.model_requested == "demo-chat"]
    assert sorted(r["receipt_id"] for r in rows) == sorted(r.public_id for r in expected)
    assert sum(int(r["total_cost_nusd"]) for r in rows) == sum(r.total_cost_nusd for r in expected)
    first = next(r for r in rows if r["receipt_id"] == history[0].public_id)
    assert first["total_cost_usd"] == "0.000004662" and first["input_price_usd_per_million"] == "0.333"


def test_receipts_filter_by_key_status_and_date(owner, team, history):
    client = client_for(owner)
    beta = history[1].api_key.public_id
    page = client.get(f"/t/{team.public_id}/receipts/?key={beta}").content.decode()
    assert history[1].public_id in page and history[0].public_id not in page
    failed = client.get(f"/t/{team.public_id}/receipts/?status=failed").content.decode()
    assert history[3].public_id in failed and history[0].public_id not in failed
    day = (timezone.localdate() - timedelta(days=3)).isoformat()
    dated = client.get(f"/t/{team.public_id}/receipts/?start={day}&end={day}").content.decode()
    assert history[2].public_id in dated and history[0].public_id not in dated


def test_receipts_are_paginated(owner, team):
    for _ in range(30):
        make_receipt(team)
    client = client_for(owner)
    first = client.get(f"/t/{team.public_id}/receipts/")
    assert len(first.context["receipts"].object_list) == 25 and "Page 1 of 2" in first.content.decode()
    assert len(client.get(f"/t/{team.public_id}/receipts/?page=2").context["receipts"].object_list) == 5


def test_a_receipt_shows_every_figure_behind_its_cost(owner, team, history):
    r = history[2]  # 5 × 333 + 4 × 11 cached, no output
    html = client_for(owner).get(f"/t/{team.public_id}/receipts/{r.public_id}/").content.decode()
    assert "$0.000000333" in html and "$0.333" in html  # per token and per million
    assert "$0.000001665" in html and "$0.000000044" in html  # 5 × 333 and 4 × 11
    assert "$0.000001709" in html  # the total


def test_a_receipt_of_another_team_is_404(owner, team, other_team):
    theirs = make_receipt(other_team)
    assert client_for(owner).get(f"/t/{team.public_id}/receipts/{theirs.public_id}/").status_code == 404


def test_the_ledger_is_filterable_by_kind(owner, team, funded):
    client = client_for(owner)
    grant = LedgerEntry.objects.get(wallet__team=team, kind="grant")
    assert grant.public_id in client.get(f"/t/{team.public_id}/billing/?kind=grant").content.decode()
    assert grant.public_id not in client.get(f"/t/{team.public_id}/billing/?kind=refund").content.decode()
