"""Redis unreachable (defect 5 of issue 11): a real server whose REDIS_URL points at a closed port. Requests that
need Redis (the rate limits of a limited plan, the dashboard's log-in limits) are 503 with Retry-After in
OpenAI's envelope under /v1 and a friendly page in the dashboard, never a 500, and nothing is half-written: no
hold, no receipt, no idempotency record, the wallet as it was."""

from __future__ import annotations

import re

import httpx
import pytest

from billing.models import Hold, Receipt
from gateway.models import IdempotencyRecord
from tests.conftest import requires_postgres
from tests.faults.conftest import CHAT, assert_openai_envelope, funded_team, get, post, report
from tests.live_server import closed_port
from tests.processes import start_server

pytestmark = [requires_postgres, pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def no_redis_server(django_db_setup):
    """One server for the module: it never places a hold (Redis refuses first), so no test's rows outlive it."""
    server = start_server(REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")
    try:
        yield server
    finally:
        server.stop()


def test_with_redis_unreachable_v1_is_503_with_retry_after_and_nothing_is_written(transactional_db, no_redis_server):
    acme = funded_team(plan="starter")  # rate limited: every /v1 request of its keys counts in Redis
    before = acme.wallet()
    url = no_redis_server.url
    answers = [
        post(url, "/v1/chat/completions", CHAT, acme.live_key),
        post(url, "/v1/chat/completions", {**CHAT, "stream": True}, acme.live_key),
        post(url, "/v1/embeddings", {"model": "demo-embed", "input": "toll"}, acme.live_key),
        post(url, "/v1/chat/completions/estimate", CHAT, acme.live_key),
        get(url, "/v1/models", acme.live_key),
        get(url, "/v1/models/demo-chat", acme.live_key),
        get(url, "/v1/balance", acme.live_key),
        get(url, "/v1/receipts", acme.live_key),
        post(url, "/v1/chat/completions", CHAT, acme.test_key),
    ]
    # the same request with an Idempotency-Key, twice: the second is a 503 again, not a 409 (no record in flight)
    idempotent = {"Idempotency-Key": "fault-redis-1"}
    answers += [post(url, "/v1/chat/completions", CHAT, acme.live_key, extra_headers=idempotent) for _ in range(2)]
    failures = [(a.path, a.status, a.body) for a in answers if a.status != 503]
    assert not failures, (failures, no_redis_server.output()[-3000:])
    for answer in answers:
        assert_openai_envelope(answer)
        assert answer.headers.get("Retry-After", "").isdigit(), (answer.path, answer.headers)
        assert answer.body["error"]["code"] in ("rate_limiter_unavailable", "service_unavailable"), answer.body
        assert "redis" not in str(answer.body).lower() and "127.0.0.1" not in str(answer.body)  # no internals
    after = acme.wallet()
    assert (after.balance_nusd, after.held_nusd) == (before.balance_nusd, before.held_nusd)
    assert not Hold.objects.exists() and not Receipt.objects.exists()
    assert not IdempotencyRecord.objects.exists()
    assert get(url, "/readyz").body["down"] == ["cache", "channel_layer"]
    report("redis unreachable", requests=len(answers), s503=len(answers), s500=0)


def test_with_redis_unreachable_the_dashboard_log_in_is_a_friendly_page(transactional_db, no_redis_server):
    acme = funded_team(plan="starter")
    with httpx.Client(base_url=no_redis_server.url, timeout=10) as browser:
        page = browser.get("/login/")
        assert page.status_code in (200, 503), page.text[:500]
        if page.status_code == 200:  # the form renders; posting it needs the log-in limits, kept in Redis
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            page = browser.post(
                "/login/",
                data={"login": acme.owner.email, "password": "correct-horse-battery", "csrfmiddlewaretoken": token},
                headers={"Referer": f"{no_redis_server.url}/login/"},
            )
    assert page.status_code == 503, page.text[:500]
    assert page.headers.get("Retry-After")
    assert "text/html" in page.headers["content-type"]
    assert "Briefly unavailable" in page.text
    assert "Traceback" not in page.text and "redis" not in page.text.lower() and "Server Error" not in page.text
