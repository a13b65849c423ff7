"""How errors look to a client: OpenAI's envelope on most of /v1, Anthropic's on /v1/messages.

Both the plain body and the in-stream form (after a stream's headers went out) come from here, so every
transport path writes the same shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from config.errors import ApiError, envelope

# HTTP status → Anthropic's error type, as its errors page lists them (docs.anthropic.com/en/api/errors: 400
# invalid_request_error, also "for other 4XX status codes not listed", 401 authentication_error, 402
# billing_error, 403 permission_error, 404 not_found_error, 413 request_too_large, 429 rate_limit_error, 500
# api_error, 504 timeout_error, 529 overloaded_error) and the official SDK's ErrorType (conflict_error for 409,
# which the SDK retries like Anthropic's lock timeouts). The status codes stay ours: the SDK maps 402 to
# PaymentRequiredError, 503 to ServiceUnavailableError (retried) and 504 to GatewayTimeoutError.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str

    def error_body(self, exc: ApiError, request_id: str) -> bytes:
        if self.name == "anthropic":
            kind = _ANTHROPIC_TYPES.get(exc.status, "api_error")
            return orjson.dumps(
                {
                    "type": "error",
                    "error": {"type": kind, "message": exc.message, **exc.extra},
                    "request_id": request_id,
                }
            )
        return orjson.dumps(
            envelope(exc.message, kind=exc.kind, code=exc.code, param=exc.param, request_id=request_id, extra=exc.extra)
        )

    def error_headers(self, request_id: str) -> dict[str, str]:
        return {"request-id": request_id} if self.name == "anthropic" else {}

    def stream_error(self, exc: ApiError, request_id: str) -> bytes:
        """An error after the stream's headers went out."""
        if self.name == "anthropic":
            return b"event: error\ndata: " + self.error_body(exc, request_id) + b"\n\n"
        return b"data: " + self.error_body(exc, request_id) + b"\n\n"


OPENAI = Dialect("openai")
ANTHROPIC = Dialect("anthropic")
