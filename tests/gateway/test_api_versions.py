"""Tollgate-Version: every /v1 response says which version served it; a request may pin a published one; an
unknown one is 400, in the path's dialect, before anything else happens."""

from __future__ import annotations

import pytest

from billing.models import Hold, Receipt
from config import versions
from tests.asgi import V1
from tests.gateway.conftest import chat

pytestmark = pytest.mark.django_db


def test_every_v1_response_carries_the_version_it_was_served_with(v1):
    for response in (
        v1.post("/chat/completions", chat()),
        v1.get("/models"),
        v1.get("/balance"),
        V1(None).get("/models"),  # a refusal too
        v1.get("/no-such-route"),
    ):
        assert response["Tollgate-Version"] == versions.CURRENT, response.content


def test_a_published_version_can_be_pinned(v1):
    oldest = versions.PUBLISHED[0]
    response = v1.post("/chat/completions", chat(), headers={"Tollgate-Version": oldest})
    assert response.status_code == 200 and response["Tollgate-Version"] == oldest
    assert v1.get("/models", headers={"Tollgate-Version": oldest})["Tollgate-Version"] == oldest


def test_an_unknown_version_is_400_before_anything_else(v1):
    bad = {"Tollgate-Version": "2019-01-01"}
    response = v1.post("/chat/completions", chat(), headers=bad)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_api_version"
    assert response.json()["error"]["param"] == "Tollgate-Version"
    assert not Receipt.objects.exists() and not Hold.objects.exists()
    # even before authentication: a request without a key gets the version error, not a 401
    assert V1(None).post("/chat/completions", chat(), headers=bad).status_code == 400
    served = v1.get("/models", headers=bad)
    assert served.status_code == 400 and served.json()["error"]["code"] == "invalid_api_version"


def test_on_the_messages_path_the_version_error_is_anthropics(v1):
    response = v1.post(
        "/messages",
        {"model": "demo-chat", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
        headers={"Tollgate-Version": "tomorrow"},
    )
    assert response.status_code == 400
    assert response.json()["type"] == "error" and response.json()["error"]["type"] == "invalid_request_error"
