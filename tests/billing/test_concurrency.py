"""On PostgreSQL: concurrent requests can never spend the same credit, across threads and OS processes,
and a settlement racing the sweeper releases a hold exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from billing.errors import BillingError, InsufficientBalance
from billing.models import Hold, HoldLease, HoldStatus, Wallet
from billing.reconcile import find_discrepancies
from billing.services import release_abandoned_holds
from tests.billing.calls import place_hold, settle
from tests.billing.conftest import META, PRICES, USD, fund, usage
from tests.conftest import requires_postgres

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
HOLD = USD  # the wallet affords exactly 7 of these


def run_threads(count: int, work) -> list:
    """`count` threads, each on its own database connection, released together by a barrier."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects what each thread saw
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return results


def outcome(result) -> str:
    return (
        result.code
        if isinstance(result, BillingError)
        else ("ok" if not isinstance(result, Exception) else repr(result))
    )


def test_fifty_threads_race_for_a_wallet_that_affords_seven(team, capsys):
    fund(team, 7)
    results = run_threads(
        50, lambda i: place_hold(team_id=team.id, key_id=None, request_id=f"req_t{i}", amount_nusd=HOLD, is_test=False)
    )
    assert Counter(map(outcome, results)) == {"ok": 7, "insufficient_balance": 43}
    assert all(isinstance(r, InsufficientBalance) for r in results if isinstance(r, BillingError))
    w = Wallet.objects.get(team=team)
    assert (w.balance_nusd, w.held_nusd, w.available_nusd) == (7 * USD, 7 * USD, 0)
    assert Hold.objects.filter(status=HoldStatus.OPEN).count() == 7
    call_command("check_ledger")
    assert capsys.readouterr().out.startswith("ok:")


def test_fifty_threads_settling_and_placing_at_once_keep_the_books_straight(team):
    fund(team, 7)
    first = [
        place_hold(team_id=team.id, key_id=None, request_id=f"req_a{i}", amount_nusd=HOLD, is_test=False)
        for i in range(7)
    ]

    def work(i: int):
        if i < 7:  # each of the first seven settles its hold (cost $0.25), freeing $0.75 of credit
            return settle(first[i], usage=usage(prompt=250_000, completion=0), prices=PRICES, meta=META)
        return place_hold(team_id=team.id, key_id=None, request_id=f"req_b{i}", amount_nusd=HOLD // 4, is_test=False)

    results = run_threads(50, work)
    assert not [r for r in results if isinstance(r, Exception) and not isinstance(r, BillingError)]
    w = Wallet.objects.get(team=team)
    placed = sum(1 for r in results[7:] if not isinstance(r, Exception))
    assert w.balance_nusd == 7 * USD - 7 * (USD // 4)
    assert w.held_nusd == placed * (HOLD // 4) <= w.balance_nusd
    assert find_discrepancies() == []


def test_settle_racing_the_sweeper_releases_each_hold_exactly_once(team):
    fund(team, 20)
    refs = [
        place_hold(team_id=team.id, key_id=None, request_id=f"req_s{i}", amount_nusd=HOLD, is_test=False)
        for i in range(20)
    ]
    HoldLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))  # every request's process looks dead

    def work(i: int):
        if i < 20:
            return settle(refs[i], usage=usage(prompt=1_000, completion=0), prices=PRICES, meta=META)
        return release_abandoned_holds()

    run_threads(24, work)
    w = Wallet.objects.get(team=team)
    assert w.held_nusd == 0 and not Hold.objects.filter(status=HoldStatus.OPEN).exists()
    assert w.balance_nusd == 20 * USD - 20 * 1_000_000  # every request paid once, whoever closed its hold
    assert find_discrepancies() == []


WORKER = r"""
import json, os, sys
import django
django.setup()
from django.db import connection
from tests.billing.calls import place_hold
from billing.errors import InsufficientBalance

team_id, attempts, tag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
connection.ensure_connection()
print("ready", flush=True)
sys.stdin.readline()  # wait for "go" so both processes race
ok = refused = 0
for i in range(attempts):
    try:
        place_hold(team_id=team_id, key_id=None, request_id=f"req_{tag}_{i}", amount_nusd=10**9, is_test=False)
        ok += 1
    except InsufficientBalance as exc:
        assert exc.code == "insufficient_balance", exc.code
        refused += 1
connection.close()
print(json.dumps({"ok": ok, "refused": refused}), flush=True)
"""


def test_two_processes_race_for_a_wallet_that_affords_seven(team):
    fund(team, 7)
    db = connection.settings_dict
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{host}:{port}/{db['NAME']}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "TOLLGATE_TESTING": "1",
        "DB_CONN_MAX_AGE": "0",
        "PYTHONPATH": str(ROOT),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(team.id), "25", f"p{n}"],
            cwd=ROOT,
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outputs = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert sum(o["ok"] for o in outputs) == 7
    assert sum(o["refused"] for o in outputs) == 43
    w = Wallet.objects.get(team=team)
    assert w.held_nusd == 7 * USD and Hold.objects.filter(status=HoldStatus.OPEN).count() == 7
    assert find_discrepancies() == []
