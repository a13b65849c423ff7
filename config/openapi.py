"""What both OpenAPI documents (/v1/openapi.json from django-ninja, /api/v1/schema/ from drf-spectacular) must say
the same way, so that they describe what is served (tests/fuzz/ checks every response against them):

- money is an exact JSON number (`UsdAmount`), never a string;
- every operation is reached with a key (`KeyAuth`, bearer; the management API also takes a session) and can be
  refused in the error envelope: 400 bad input, 401 no or a bad key, 403 a missing scope or role, 404 not found
  (or not yours), 429 rate limited, 503 briefly unavailable (the database or Redis away; with Retry-After).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import WithJsonSchema

# Exact US dollars, written from integer nano-dollars (billing.money.json_number): a JSON number.
UsdAmount = Annotated[Decimal, WithJsonSchema({"type": "number", "description": "US dollars, exact."})]

ERROR_STATUSES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


def _envelope(title: str, description: str, required: list[str], fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "title": title,
        "description": description,
        "required": ["error", "request_id"],
        "properties": {
            "error": {"type": "object", "required": required, "properties": fields},
            "request_id": {"type": "string"},
        },
    }


_NULLABLE = {"type": ["string", "null"]}
# /v1: OpenAI's envelope (config.errors)
V1_ENVELOPE = (
    "ErrorOut",
    _envelope(
        "ErrorOut",
        "OpenAI's error envelope, with the request id.",
        ["message", "type"],
        {"message": {"type": "string"}, "type": {"type": "string"}, "param": _NULLABLE, "code": _NULLABLE},
    ),
)
# /api/v1: the management API's (accounts.rest.error_response); `fields` names every invalid field
API_ENVELOPE = (
    "ApiErrorOut",
    _envelope(
        "ApiErrorOut",
        "The management API's error envelope, with the request id.",
        ["code", "message"],
        {"code": {"type": "string"}, "message": {"type": "string"}, "param": _NULLABLE, "fields": {}},
    ),
)
_METHODS = ("get", "put", "post", "delete", "patch")


def _error_response(status: int, envelope: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_STATUSES[status],
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{envelope}"}}},
    }
    if status in (429, 503):
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}
    return response


def document_errors(
    document: dict[str, Any],
    envelope: tuple[str, dict[str, Any]] = V1_ENVELOPE,
    *,
    security: list[dict[str, list]] | None = None,
) -> dict[str, Any]:
    """Every operation of `document` declares the refusals every operation can give (ERROR_STATUSES, in its
    envelope) and, when it declares none, the given security requirement."""
    name, schema = envelope
    document.setdefault("components", {}).setdefault("schemas", {}).setdefault(name, schema)
    for item in document.get("paths", {}).values():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status in ERROR_STATUSES:
                if str(status) not in responses and status not in responses:
                    responses[str(status)] = _error_response(status, name)
            if security and not operation.get("security"):
                operation["security"] = security
    return document


def spectacular_errors(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOKS entry for the management API."""
    return document_errors(result, API_ENVELOPE)
