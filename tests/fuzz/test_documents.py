"""The served OpenAPI documents say what is served (the drift tests/fuzz/test_openapi.py found, pinned without a
server): money is a JSON number, every operation names its security and its refusals in its own envelope, a
model's capabilities are keyed `json`, receipts keep their own usage schema, a team's projects are a plain list."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def v1(django_db_setup, django_db_blocker) -> dict:
    with django_db_blocker.unblock():
        return Client().get("/v1/openapi.json").json()


@pytest.fixture(scope="module")
def management(django_db_setup, django_db_blocker) -> dict:
    with django_db_blocker.unblock():
        return Client().get("/api/v1/schema/", {"format": "json"}).json()


def _operations(document: dict):
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield f"{method.upper()} {path}", item[method]


@pytest.mark.parametrize("name", ["v1", "management"])
def test_every_operation_documents_the_refusals_every_operation_can_give(name, request):
    document = request.getfixturevalue(name)
    envelope = "ErrorOut" if name == "v1" else "ApiErrorOut"
    missing = {
        op: sorted({"400", "401", "403", "404", "429", "503"} - set(operation["responses"]))
        for op, operation in _operations(document)
    }
    assert not {op: codes for op, codes in missing.items() if codes}
    ref = f"#/components/schemas/{envelope}"
    anthropic = ("/v1/messages", "/v1/messages/count_tokens")  # Anthropic's envelope there
    unlisted = [
        op
        for op, operation in _operations(document)
        if operation["responses"]["404"]["content"]["application/json"]["schema"]["$ref"] != ref
        and op.split()[1] not in anthropic
    ]
    assert not unlisted
    listing = "/v1/balance" if name == "v1" else "/api/v1/teams/{team_public_id}/keys/"
    assert "Retry-After" in document["paths"][listing]["get"]["responses"]["503"]["headers"]


def test_every_v1_operation_needs_a_key(v1):
    assert not [op for op, operation in _operations(v1) if not operation.get("security")]
    assert v1["components"]["securitySchemes"]["KeyAuth"] == {"type": "http", "scheme": "bearer"}


def test_money_is_a_json_number(v1):
    schemas = v1["components"]["schemas"]
    for schema, fields in {
        "BalanceOut": ("credits", "held_credits", "available_credits"),
        "ReceiptOut": ("input_cost_usd", "output_cost_usd", "total_cost_usd", "hold_usd"),
        "UsageOut": ("input_cost_usd", "output_cost_usd", "total_cost_usd"),
    }.items():
        for field in fields:
            assert schemas[schema]["properties"][field]["type"] == "number", (schema, field)


def test_receipts_and_completions_keep_their_own_usage_schemas(v1):
    schemas = v1["components"]["schemas"]
    assert schemas["ReceiptOut"]["properties"]["usage"]["$ref"].endswith("/ReceiptUsageOut")
    assert "cached_tokens" in schemas["ReceiptUsageOut"]["properties"]
    assert "prompt_tokens_details" in schemas["UsageOut"]["properties"]


def test_capabilities_are_keyed_as_served(v1):
    assert "json" in v1["components"]["schemas"]["CapabilitiesOut"]["properties"]
    assert "json_" not in v1["components"]["schemas"]["CapabilitiesOut"]["properties"]


def test_providers_take_the_model_query_parameter(v1):
    names = [p["name"] for p in v1["paths"]["/v1/providers"]["get"]["parameters"]]
    assert "model" in names


def test_a_teams_projects_are_a_plain_list(management):
    listing = management["paths"]["/api/v1/teams/{team_public_id}/projects/"]["get"]
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
    assert not [p for p in listing.get("parameters", []) if p["name"] in ("limit", "offset")]
