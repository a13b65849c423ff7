"""Production's way of running image jobs: PostgreSQL + Redis, the live server enqueues on the Redis broker and
a real `celery -A config worker` process (another OS process, against the test database) runs the job while
the client polls: submit → processing → succeeded → download → receipt and wallet."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings as django_settings
from django.db import connection
from PIL import Image

from billing.models import Receipt, Wallet
from billing.reconcile import find_discrepancies
from gateway.models import ImageJob
from tests.conftest import requires_postgres
from tests.processes import stop

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    requires_postgres,
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL) as the Celery broker"),
]
ROOT = Path(__file__).resolve().parents[2]
CELERY = Path(sys.executable).with_name("celery")


@pytest.fixture
def celery_worker(live, settings):
    """A Celery worker subprocess on the test database and this run's Redis db; killed by its PID at the end."""
    settings.BACKGROUND_RUNNER = "celery"
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "TOLLGATE_TESTING": "1",
        "BACKGROUND_RUNNER": "celery",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "MEDIA_ROOT": django_settings.STORAGES["default"]["OPTIONS"]["location"],  # where the server reads files
        "PUBLIC_BASE_URL": live.url,
        "SIMULATOR_IMAGE_LATENCY_MS": "700",  # slow enough for the client to see "processing"
    }
    worker = subprocess.Popen(
        [str(CELERY), "-A", "config", "worker", "--pool=solo", "--without-gossip", "--without-mingle", "-l", "info"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in worker.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if " ready." in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(timeout=30), "the Celery worker did not start:\n" + "".join(lines[-30:])
        yield lines
    finally:
        stop(worker)


def test_a_job_runs_on_a_real_celery_worker_and_is_paid_for(acme, live_key, base_url, celery_worker):
    headers = {"Authorization": f"Bearer {live_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=20) as http:
        submitted = http.post("/images", json={"model": "demo-image", "prompt": "a harbour at dawn", "n": 2})
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job = http.get(f"/images/{job_id}").json()
            if not seen or seen[-1] != job["status"]:
                seen.append(job["status"])
            if job["status"] not in ("pending", "processing"):
                break
            time.sleep(0.1)
        assert job["status"] == "succeeded", (job, "".join(celery_worker[-30:]))
        assert "processing" in seen
        for url in job["output_urls"]:
            served = httpx.get(url, timeout=10)  # anonymous
            assert served.status_code == 200
            import io

            assert Image.open(io.BytesIO(served.content)).size == (1024, 1024)
    assert any("gateway.tasks.run_image_job" in line for line in celery_worker)  # the worker ran it, not us
    receipt = Receipt.objects.get(public_id=job["receipt_id"])
    assert (receipt.endpoint, receipt.images, receipt.total_cost_nusd) == ("images", 2, 80_000_000)
    wallet = Wallet.objects.get(team=acme)
    assert (wallet.balance_nusd, wallet.held_nusd) == (10 * 10**9 - 80_000_000, 0)
    assert ImageJob.objects.get().attempts == 1
    assert find_discrepancies() == []
