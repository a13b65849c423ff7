"""OpenAI's error envelope, shared by every /v1 transport (ninja views and Channels consumers)."""

from __future__ import annotations

import json

from django.http import HttpResponse

# status -> default OpenAI error type
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_balance",
    403: "permission_error",
    404: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class ApiError(Exception):
    """Raise anywhere below a /v1 handler; the handler turns it into the envelope."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.kind = kind or ERROR_TYPES.get(status, "invalid_request_error")
        self.headers = headers or {}
        self.extra = extra or {}  # more fields of the error object, e.g. which limit refused a request


def envelope(
    message: str, *, kind: str, code: str | None, param: str | None, request_id: str, extra: dict | None = None
) -> dict:
    return {
        "error": {"message": message, "type": kind, "param": param, "code": code, **(extra or {})},
        "request_id": request_id,
    }


def error_response(
    status: int,
    message: str,
    *,
    kind: str | None = None,
    code: str | None = None,
    param: str | None = None,
    request_id: str,
    headers: dict[str, str] | None = None,
    extra: dict | None = None,
) -> HttpResponse:
    body = envelope(
        message,
        kind=kind or ERROR_TYPES.get(status, "invalid_request_error"),
        code=code,
        param=param,
        request_id=request_id,
        extra=extra,
    )
    response = HttpResponse(json.dumps(body), status=status, content_type="application/json")
    response.is_envelope = True  # type: ignore[attr-defined]
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def api_error_response(exc: ApiError, request_id: str) -> HttpResponse:
    return error_response(
        exc.status,
        exc.message,
        kind=exc.kind,
        code=exc.code,
        param=exc.param,
        request_id=request_id,
        headers=exc.headers,
        extra=exc.extra,
    )
