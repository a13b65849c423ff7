"""A misbehaving OpenAI-compatible upstream (tests/gateway/misbehaving_upstream.py) behind a real server process,
every misbehaviour with and without a backup route, plain and streamed: the status the client gets, and that every
request's hold ends exactly once with a receipt that charges nothing for a failure and what was delivered for
output cut short. tests/e2e/test_misbehaving_upstream.py looks at each case closely in-process; this is the same
matrix through `python -m config.serve`."""

from __future__ import annotations

import orjson
import pytest

from billing.models import Hold, HoldStatus, Receipt
from gateway.models import Provider, Route
from gateway.price_book import create_model
from tests.conftest import requires_postgres
from tests.faults.conftest import MSGS, assert_books_exact, funded_team, post, report, wait_until
from tests.processes import start_server

pytestmark = [
    requires_postgres,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
]

# mode → (plain, stream) outcome without a backup route: HTTP status, receipt status, what it charges
# ("0" nothing, "+" something: the output delivered, or the whole answer)
ALONE = {
    "status-500": ((502, "failed", "0"), (502, "failed", "0")),
    "error-200": ((502, "failed", "0"), (502, "failed", "0")),
    "hang": ((504, "failed", "0"), (504, "failed", "0")),
    "drop-c6": ((502, "failed", "0"), (200, "partial", "+")),  # stream: cut after 3 chunks, told in-band
    "malformed": ((502, "failed", "0"), (200, "partial", "+")),  # stream: garbage after the first chunk
    "usage-negative": ((200, "succeeded", "+"), (200, "succeeded", "+")),
    "usage-huge": ((200, "succeeded", "+"), (200, "succeeded", "+")),
    "usage-text": ((200, "succeeded", "+"), (200, "succeeded", "+")),
    "no-usage": ((200, "succeeded", "+"), (200, "succeeded", "+")),
}
OK = (200, "succeeded", "+")
# With the simulator as backup, what fails before the first byte goes there; output already relayed cannot be
# taken back, so a stream broken after its first chunk ends as it does alone.
BACKED = {mode: (OK, outcome[1] if outcome[1][1] == "partial" else OK) for mode, outcome in ALONE.items()}


def _models(upstream, backup: bool) -> dict[str, str]:
    provider = Provider.objects.create(
        slug="flaky",
        kind="openai",
        base_url=upstream.base_url,
        timeout_seconds=1.0,
        connect_timeout_seconds=1.0,
        options={"read_timeout_seconds": 1.0},
    )
    provider.api_key = "sk-upstream-test"
    provider.save()
    simulator = Provider.objects.get(slug="simulator")
    models = {}
    for mode in ALONE:
        model = create_model(f"m-{mode}", input_price_nusd=1_000, output_price_nusd=2_000)
        Route.objects.create(model=model, provider=provider, upstream_model=mode, priority="primary")
        if backup:
            Route.objects.create(model=model, provider=simulator, upstream_model="sim", priority="backup")
        models[mode] = model.public_id
    return models


def _in_band_error(body: bytes) -> bool:
    return any(line.startswith(b"data: {") and b'"error"' in line for line in body.splitlines())


@pytest.mark.parametrize("backup", [False, True], ids=["alone", "with-backup"])
def test_every_misbehaviour_ends_its_hold_once_with_the_right_status_and_charge(transactional_db, upstream, backup):
    acme = funded_team(credit_usd=5)
    models = _models(upstream, backup)
    expected = BACKED if backup else ALONE
    server = start_server(GATEWAY_RETRY_BACKOFF_SECONDS="0", GATEWAY_BREAKER_FAILURES="100")
    before = acme.wallet().balance_nusd
    seen: dict[str, tuple] = {}
    try:
        for mode, model in models.items():
            for stream in (False, True):
                body = {"model": model, "messages": MSGS, "max_tokens": 16, "stream": stream}
                if stream:
                    body["stream_options"] = {"include_usage": True}
                answer = post(server.url, "/v1/chat/completions", body, acme.live_key)
                seen[f"{mode}{'-stream' if stream else ''}"] = (answer, expected[mode][stream])
        # settlements written after the reply land within moments
        assert wait_until(lambda: not Hold.objects.filter(status=HoldStatus.OPEN).exists(), timeout=10) is not None
    finally:
        server.stop()

    mismatches = []
    charged = 0
    for case, (answer, (status, receipt_status, charge)) in seen.items():
        request_id = answer.headers.get("X-Request-Id")
        receipts = list(Receipt.objects.filter(request_id=request_id))
        got = (answer.status, receipts[0].status if len(receipts) == 1 else f"{len(receipts)} receipts")
        cost = receipts[0].total_cost_nusd if len(receipts) == 1 else None
        if got != (status, receipt_status) or (cost == 0) != (charge == "0"):
            mismatches.append((case, "expected", (status, receipt_status, charge), "got", got, cost))
            continue
        charged += cost
        hold = Hold.objects.get(request_id=request_id)
        ended = HoldStatus.RELEASED if receipt_status == "failed" else HoldStatus.SETTLED  # a failure pays nothing
        assert hold.status == ended and cost <= hold.amount_nusd, (case, hold.status)
        if answer.status != 200:  # a failure is a plain JSON envelope naming the request, never a 500
            assert isinstance(answer.body, dict) and answer.body["request_id"] == request_id, (case, answer.body)
        elif receipt_status == "partial":  # cut short: the client was told in-band and paid for what it got
            assert isinstance(answer.body, bytes) and _in_band_error(answer.body), (case, answer.body[-300:])
            assert b"data: [DONE]" not in answer.body
        elif isinstance(answer.body, dict):
            assert answer.body["usage"]["receipt_id"] == receipts[0].public_id
            assert answer.body["usage"]["completion_tokens"] >= 0 and answer.body["usage"]["prompt_tokens"] > 0
        else:
            usage = orjson.loads(answer.body.split(b"data: ")[-2])["usage"]
            assert usage["receipt_id"] == receipts[0].public_id and usage["completion_tokens"] > 0
    assert not mismatches, mismatches
    assert acme.wallet().balance_nusd == before - charged
    assert_books_exact(acme.team)
    report(
        f"upstream matrix ({'with backup' if backup else 'alone'})",
        cases=len(seen),
        s200=sum(a.status == 200 for a, _ in seen.values()),
        partial=sum(e[1] == "partial" for _, e in seen.values()),
        failed=sum(e[1] == "failed" for _, e in seen.values()),
    )
