"""/healthz answers while the process lives; /readyz names whatever dependency is down."""

from config import health


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["X-Request-Id"].startswith("req_")


def test_readyz_all_up(client, db):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "cache": "ok", "channel_layer": "ok"}


def test_readyz_reports_a_down_database(client, db, monkeypatch):
    def broken():
        raise ConnectionError("connection refused")

    monkeypatch.setitem(health.CHECKS, "database", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["database"]
    assert body["checks"]["cache"] == "ok"


def test_readyz_with_a_really_unreachable_database(client, db, settings):
    """Point a fresh connection at a closed port: the real check fails, not a monkeypatch."""
    from django.db import connections

    conn = connections["default"]
    if conn.vendor != "postgresql":
        return  # SQLite cannot be "down"; covered by the monkeypatched test above
    original = dict(conn.settings_dict)
    conn.close()
    conn.settings_dict["PORT"] = "1"
    try:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert "database" in response.json()["down"]
    finally:
        conn.close()
        conn.settings_dict.update(original)
