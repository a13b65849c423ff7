"""`tollgate balance / receipts / receipt / models / embed`: exact money in JSON and CSV, tables for people,
paging past the API's 100 per page, exit 3 for an empty wallet, 2 for a refused or under-scoped key, and
another team's receipts out of reach."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts import keyformat
from accounts.keys import mint_key
from billing import money
from billing.models import Receipt, Wallet
from tests.cli.conftest import settled
from tests.dashboard.conftest import make_receipt

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _chat(cli, text: str) -> None:
    done = cli("chat", "-m", "demo-chat", f"echo: {text}")
    assert done.returncode == 0, done.stderr


def test_balance_is_exact_in_json_and_readable_for_people(cli, acme, logged_in):
    _chat(cli, "spend a little")
    settled()
    wallet = Wallet.objects.get(team=acme)

    body = json.loads(cli("balance", "--json").stdout, parse_float=Decimal)
    assert body["credits"] == Decimal(money.exact(wallet.balance_nusd))
    assert body["available_credits"] == Decimal(money.exact(wallet.balance_nusd - wallet.held_nusd))

    people = cli("balance")
    assert people.returncode == 0
    assert money.usd(wallet.balance_nusd) in people.stdout


def test_receipts_list_newest_first_as_a_table_json_and_exact_csv(cli, acme, logged_in):
    for text in ("one", "two", "three"):
        _chat(cli, text)
    settled()
    receipts = list(Receipt.objects.filter(team=acme).order_by("-created_at", "-id"))

    body = json.loads(cli("receipts", "--json", "--limit", "2").stdout, parse_float=Decimal)
    assert [r["id"] for r in body["data"]] == [r.public_id for r in receipts[:2]]
    assert body["has_more"] is True
    assert body["data"][0]["total_cost_usd"] == Decimal(money.exact(receipts[0].total_cost_nusd))

    table = cli("receipts")
    assert table.returncode == 0
    for receipt in receipts:
        assert receipt.public_id in table.stdout
        assert money.usd(receipt.total_cost_nusd) in table.stdout

    rows = list(csv.DictReader(io.StringIO(cli("receipts", "--csv").stdout)))
    assert [row["id"] for row in rows] == [r.public_id for r in receipts]
    assert rows[0]["total_cost_usd"] == money.exact(receipts[0].total_cost_nusd)  # digits, never a float
    assert rows[0]["completion_tokens"] == str(receipts[0].completion_tokens)

    assert cli("receipts", "--json", "--csv").returncode == 1


def test_receipts_page_past_a_hundred_and_filter_by_date(cli, acme, logged_in):
    old = timezone.now() - timedelta(days=10)
    for i in range(105):
        make_receipt(acme, request_id=f"req_cli{i}", created_at=old + timedelta(seconds=i))

    body = json.loads(cli("receipts", "--json", "--limit", "103").stdout)
    ids = [r["id"] for r in body["data"]]
    assert len(ids) == len(set(ids)) == 103  # two pages, followed by the `after` cursor
    assert body["has_more"] is True
    everything = json.loads(cli("receipts", "--json", "--limit", "500").stdout)
    assert len(everything["data"]) == 105 and everything["has_more"] is False

    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    assert json.loads(cli("receipts", "--json", "--since", since).stdout)["data"] == []
    bad = cli("receipts", "--since", "last tuesday")
    assert bad.returncode == 1
    assert "since" in bad.stderr


def test_one_receipt_shows_tokens_times_unit_prices_and_the_exact_total(cli, acme, logged_in):
    _chat(cli, "a receipt please")
    settled()
    receipt = Receipt.objects.get(team=acme)

    people = cli("receipt", receipt.public_id)
    assert people.returncode == 0, people.stderr
    assert f"{receipt.completion_tokens} tokens × $1.50/M" in people.stdout
    assert money.usd(receipt.total_cost_nusd) in people.stdout
    assert receipt.request_id in people.stdout

    body = json.loads(cli("receipt", receipt.public_id, "--json").stdout, parse_float=Decimal)
    assert body["id"] == receipt.public_id
    assert body["total_cost_usd"] == Decimal(money.exact(receipt.total_cost_nusd))


def test_another_teams_receipts_are_out_of_reach(cli, acme, logged_in, other_team, outsider):
    _chat(cli, "private")
    settled()
    mine = Receipt.objects.get(team=acme)
    evil = {"TOLLGATE_API_KEY": mint_key(team=other_team, name="evil", created_by=outsider).plaintext}

    listed = json.loads(cli("receipts", "--json", env=evil).stdout)
    assert listed["data"] == []
    missing = cli("receipt", mine.public_id, env=evil)
    assert missing.returncode == 1
    assert "not_found" in missing.stderr
    assert mine.public_id not in missing.stdout


def test_models_lists_prices_per_million_tokens(cli, acme, logged_in):
    people = cli("models")
    assert people.returncode == 0
    demo = next(line for line in people.stdout.splitlines() if line.startswith("demo-chat "))
    assert "$0.50" in demo and "$0.25" in demo and "$1.50" in demo and "128,000" in demo

    body = json.loads(cli("models", "--json").stdout)
    assert {"demo-chat", "demo-chat-mini", "demo-embed"} <= {m["id"] for m in body["data"]}


def test_embed_prints_one_vector_per_text_and_the_cost(cli, acme, logged_in):
    done = cli("embed", "-m", "demo-embed", "--dimensions", "8", "hello world", "goodbye")
    assert done.returncode == 0, done.stderr
    vectors = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(vectors) == 2 and all(len(v) == 8 for v in vectors)
    settled()
    receipt = Receipt.objects.get(team=acme)
    assert receipt.public_id in done.stderr

    from_stdin = json.loads(cli("embed", "-m", "demo-embed", "--json", input="hello world\n").stdout)
    assert from_stdin["data"][0]["embedding"] == pytest.approx(
        json.loads(cli("embed", "-m", "demo-embed", "hello world").stdout)
    )


def test_an_empty_wallet_exits_3_and_nothing_is_charged(cli, live, other_team, outsider):
    from django.core.management import call_command

    call_command("seed_catalog", quiet=True)
    broke = {"TOLLGATE_API_KEY": mint_key(team=other_team, name="broke", created_by=outsider).plaintext}
    done = cli("chat", "-m", "demo-chat", "hello", env={**broke, "TOLLGATE_BASE_URL": live.url})

    assert done.returncode == 3
    assert done.stdout == ""
    assert "insufficient_balance" in done.stderr
    assert not Receipt.objects.filter(team=other_team).exists()
    scripted = cli("chat", "-m", "demo-chat", "--json", "hello", env={**broke, "TOLLGATE_BASE_URL": live.url})
    assert scripted.returncode == 3
    assert json.loads(scripted.stdout)["error"]["code"] == "insufficient_balance"


def test_a_bad_or_under_scoped_key_exits_2(cli, live, acme, owner):
    env = {"TOLLGATE_BASE_URL": live.url}
    unknown = cli("balance", env={**env, "TOLLGATE_API_KEY": keyformat.generate("live")})
    assert unknown.returncode == 2
    assert "invalid_api_key" in unknown.stderr

    inference_only = mint_key(team=acme, name="narrow", scopes=["inference"], created_by=owner).plaintext
    narrow = cli("balance", env={**env, "TOLLGATE_API_KEY": inference_only})
    assert narrow.returncode == 2
    assert "insufficient_scope" in narrow.stderr
