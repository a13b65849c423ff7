"""GET /metrics (Prometheus text, never public by default) and the logs' shape: every line of a /v1 request names
its request id, one access line per request, never a prompt or a completion."""

from __future__ import annotations

import json
import logging

import pytest
from django.test import Client

from config.logs import JsonFormatter, RequestContextFilter, start_request
from tests.gateway.conftest import chat

TOKEN = "metrics-token-for-tests-0123456789"


def test_metrics_are_not_served_unless_configured(db, settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = "", []
    assert Client().get("/metrics").status_code == 404


def test_metrics_need_the_token_or_an_allowed_address(db, settings):
    settings.METRICS_TOKEN = TOKEN
    assert Client().get("/metrics").status_code == 403
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = "", ["10.0.0.0/8"]
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.0.2.1").get("/metrics").status_code == 403


def _sample(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        named = line.startswith(name + "{") or line.startswith(name + " ")
        if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_requests_spend_and_holds_are_counted(v1, settings, funded_team, django_capture_on_commit_callbacks):
    settings.METRICS_TOKEN = TOKEN
    scrape = lambda: Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()  # noqa: E731
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True):  # the settlement's listeners run once it commits
        ok = v1.post("/chat/completions", chat())
    refused = v1.post("/chat/completions", chat(model="no-such-model"))
    after = scrape()
    assert ok.status_code == 200 and refused.status_code == 404
    labels = {"endpoint": "chat.completions", "model": "demo-chat", "status_class": "2xx", "mode": "live"}
    counted = "tollgate_requests_total"
    assert _sample(after, counted, **labels) == _sample(before, counted, **labels) + 1
    miss = {"endpoint": "chat.completions", "model": "unknown", "status_class": "4xx", "mode": "live"}
    assert _sample(after, counted, **miss) == _sample(before, counted, **miss) + 1
    from billing.models import Receipt

    cost = Receipt.objects.get(public_id=ok.json()["usage"]["receipt_id"]).total_cost_nusd
    spent = _sample(after, "tollgate_spend_nusd_total", model="demo-chat") - _sample(
        before, "tollgate_spend_nusd_total", model="demo-chat"
    )
    assert spent == cost > 0
    assert _sample(after, "tollgate_open_holds") == 0 and "tollgate_held_nusd" in after
    assert _sample(after, "tollgate_upstream_attempts_total", provider="simulator", outcome="ok") >= 1


def test_a_json_log_line_carries_the_request_context():
    fields = start_request("req_123")
    fields.update(team="team_abc", key="key_def", model="demo-chat")
    record = logging.LogRecord("gateway.pipeline", logging.WARNING, __file__, 1, "something %s", ("odd",), None)
    RequestContextFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "something odd" and line["level"] == "WARNING" and line["logger"] == "gateway.pipeline"
    assert (line["request_id"], line["team"], line["key"], line["model"]) == (
        "req_123",
        "team_abc",
        "key_def",
        "demo-chat",
    )
    assert line["timestamp"].endswith("+00:00")


def test_one_access_line_per_request_and_never_the_prompt_or_the_reply(v1, caplog):
    secret_prompt = "echo: the launch codes are 0000"
    with caplog.at_level(logging.DEBUG):
        response = v1.post("/chat/completions", chat(messages=[{"role": "user", "content": secret_prompt}]))
    assert response.status_code == 200
    access = [r for r in caplog.records if r.name == "tollgate.access"]
    assert len(access) == 1
    [line] = access
    assert (line.status, line.path, line.request_id) == (200, "/v1/chat/completions", response["X-Request-Id"])
    assert line.model == "demo-chat" and line.route == "simulator:demo-chat" and line.latency_ms >= 0
    logged = "\n".join(r.getMessage() + json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert "launch codes" not in logged and v1.key not in logged


@pytest.mark.parametrize("value", ["text", "json"])
def test_the_log_format_comes_from_the_environment(value):
    import os
    import subprocess
    import sys

    env = {**os.environ, "LOG_FORMAT": value, "DJANGO_SETTINGS_MODULE": "config.settings"}
    code = (
        "import django, logging; django.setup(); from config.logs import start_request; start_request('req_x');"
        "logging.getLogger('tollgate.test').warning('hello')"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    last = out.stderr.strip().splitlines()[-1]
    if value == "json":
        assert json.loads(last)["message"] == "hello" and json.loads(last)["request_id"] == "req_x"
    else:
        assert last.endswith("hello [req_x]")
