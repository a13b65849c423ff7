"""A server process killed with SIGKILL while it streams (defect 2 of issue 11): nothing of it can settle, so its
holds must be released by the sweeper, run as production runs it (the Celery beat schedule's
`billing.tasks.release_abandoned_holds` on a real `celery worker --beat`), within HOLD_LEASE_SECONDS +
HOLD_SWEEP_SECONDS of the death, while the holds of live requests are never swept. The credit they reserved is
spendable again on a new process, the books are exact and no wallet ever goes below zero."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone

from billing.models import Hold, HoldStatus, Receipt
from billing.pricing import usd_to_nusd
from billing.services import grant_credit
from tests.conftest import requires_postgres
from tests.faults.conftest import CHAT, assert_books_exact, funded_team, post, report, wait_until
from tests.processes import ROOT, open_streams, server_env, start_server, stop

pytestmark = [
    requires_postgres,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL) as the Celery broker"),
]

LEASE, SWEEP = 2, 1  # seconds: a dead process's holds are released within LEASE + SWEEP
STREAMS = 6
FAST = {"HOLD_LEASE_SECONDS": str(LEASE), "HOLD_SWEEP_SECONDS": str(SWEEP)}
STORY = {
    **CHAT,
    "max_tokens": 400,
    "stream": True,
    "messages": [{"role": "user", "content": "Tell me a very long story."}],
}


def start_beat(workdir: str) -> subprocess.Popen:
    """`celery -A config worker --beat` (deploy/'s worker and beat in one process) on this run's Redis db, whose
    queue is emptied first: tasks other server processes of the suite left there would run before the sweeps."""
    from config.celery import app

    app.control.purge()
    env = server_env(BACKGROUND_RUNNER="celery", **FAST)
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("celery")), "-A", "config", "worker", "--beat", "--pool=solo"]
        + ["--without-gossip", "--without-mingle", "-s", f"{workdir}/beat-schedule", "-l", "warning"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_kill_9_with_open_streams_releases_their_holds_within_the_lease_and_sweep(transactional_db):
    acme = funded_team(plan="enterprise", credit_usd=0)
    workdir = tempfile.mkdtemp(prefix="tollgate-faults-beat-")
    beat = start_beat(workdir)
    first = start_server(SIMULATOR_TOKENS_PER_SECOND="2", **FAST)
    second = None
    balances: list[int] = []
    try:
        estimate = post(first.url, "/v1/chat/completions/estimate", STORY, acme.live_key)
        assert estimate.status == 200, estimate.body
        hold_nusd = usd_to_nusd(Decimal(str(estimate.body["hold_usd"])))
        grant_credit(acme.team, amount_nusd=STREAMS * hold_nusd + hold_nusd // 2, reason="room for six holds")

        opened = threading.Event()
        streams = threading.Thread(
            target=lambda: asyncio.run(open_streams(first.url, acme.live_key, STORY, STREAMS, opened)), daemon=True
        )
        streams.start()
        assert opened.wait(30), "the streams did not start"
        live_holds = list(Hold.objects.filter(status=HoldStatus.OPEN).values_list("pk", flat=True))
        assert len(live_holds) == STREAMS
        # the credit is reserved: a seventh request is refused, however long the streams have run
        refused = post(first.url, "/v1/chat/completions", STORY, acme.live_key)
        assert refused.status == 402 and refused.body["error"]["code"] == "insufficient_balance", refused.body
        time.sleep(LEASE + SWEEP + 1)  # the beat sweeps every second meanwhile: live holds stay open
        assert Hold.objects.filter(pk__in=live_holds, status=HoldStatus.OPEN).count() == STREAMS

        os.kill(first.pid, signal.SIGKILL)
        killed_at = timezone.now()
        first.process.wait(timeout=10)
        streams.join(timeout=20)
        second = start_server(**FAST)  # the replacement process, as systemd would start it

        def released() -> bool:
            balances.append(acme.wallet().balance_nusd)
            return not Hold.objects.filter(pk__in=live_holds, status=HoldStatus.OPEN).exists()

        assert wait_until(released, timeout=LEASE + SWEEP + 20, interval=0.1) is not None, "holds never released"
        ended = Hold.objects.filter(pk__in=live_holds)
        assert set(ended.values_list("status", flat=True)) == {HoldStatus.EXPIRED}  # by the sweeper
        # when the sweeper closed them (its own clock, in the row), after the death
        since_death = (max(ended.values_list("closed_at", flat=True)) - killed_at).total_seconds()
        assert since_death <= LEASE + SWEEP + 1, since_death  # 1 s: the sweep's own run

        served = post(second.url, "/v1/chat/completions", {**CHAT, "max_tokens": 8}, acme.live_key)
        assert served.status == 200, served.body  # the released credit is spendable again
        assert wait_until(lambda: not Hold.objects.filter(status=HoldStatus.OPEN).exists(), timeout=10) is not None
    finally:
        first.kill()
        if second is not None:
            second.stop()
        stop(beat)
        shutil.rmtree(workdir, ignore_errors=True)
    assert min(balances) >= 0
    # the killed streams were never settled: their output went unpaid, only the last request was charged
    assert list(Receipt.objects.values_list("status", flat=True)) == ["succeeded"]
    assert_books_exact(acme.team)
    report("kill -9", streams=STREAMS, lease_s=LEASE, sweep_s=SWEEP, released_after_death_s=round(since_death, 2))
