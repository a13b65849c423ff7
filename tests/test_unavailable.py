"""A database or Redis that cannot be reached is a 503 with Retry-After, never a 500 (reliability defects 1
and 5): in OpenAI's envelope under /v1 and /api, a friendly page in the dashboard. Driven through the
production ASGI application (tests/asgi.py); the real outages are in tests/faults/."""

from __future__ import annotations

import pytest
from django.db import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from accounts.keys import mint_key
from tests.asgi import V1


@pytest.fixture
def key(team, owner):
    return mint_key(team=team, name="k", created_by=owner, scopes=["billing:read", "models:read"]).plaintext


def test_a_database_outage_on_a_django_served_v1_read_is_a_503_envelope(key, monkeypatch):
    from billing import queries

    def down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(queries, "balance_of", down)
    response = V1(key).get("/balance")
    assert response.status_code == 503 and response["Retry-After"]
    assert response.json()["error"]["code"] == "service_unavailable" and response.json()["request_id"]


def test_a_redis_outage_on_the_dashboard_log_in_is_a_friendly_page(team, monkeypatch, settings):
    from django.core.cache import cache

    settings.ACCOUNT_RATE_LIMITS = settings.LOGIN_RATE_LIMITS  # kept in the cache: Redis in production
    from django.test import Client

    def down(*args, **kwargs):
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    for name in ("get", "set", "add", "incr", "get_many", "set_many", "delete"):
        monkeypatch.setattr(cache, name, down)
    response = Client(raise_request_exception=False).post(
        "/login/", {"login": "olivia.owner@acme.test", "password": "wrong"}
    )
    assert response.status_code == 503 and response["Retry-After"]
    assert b"Briefly unavailable" in response.content and b"Traceback" not in response.content
    assert b"127.0.0.1" not in response.content  # no internal detail for customers


@pytest.mark.parametrize("path", ["/models", "/models/demo-chat", "/balance", "/receipts"])
def test_a_rate_limiter_outage_on_a_django_served_v1_read_is_a_503_envelope(key, path, monkeypatch, settings):
    """Found by tests/faults/test_redis.py: the read endpoints' rate limit runs in a view decorator, outside the
    operation, where ninja's exception handlers do not reach; the limiter's 503 became a 500."""
    from config import redis_client
    from tests.live_server import closed_port

    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"  # nothing listens there: the limiter is refused
    monkeypatch.setattr(redis_client, "_clients", {})
    response = V1(key).get(path)
    assert response.status_code == 503, response.content
    assert response["Retry-After"] and response.json()["error"]["code"] == "rate_limiter_unavailable"
    assert response.json()["request_id"].startswith("req_")
