"""The public /v1 API (django-ninja). Each app contributes a router; errors use OpenAI's envelope."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from config.errors import ApiError, api_error_response, error_response
from config.openapi import document_errors


class TollgateAPI(NinjaAPI):
    def get_openapi_schema(self, *args, **kwargs):
        """Ninja's document, plus the charging operations the pipeline's transport serves, and the refusals every
        operation can answer (config/openapi.py)."""
        from gateway.openapi import add_operations
        from gateway.operations import OPERATIONS

        document = add_operations(super().get_openapi_schema(*args, **kwargs), OPERATIONS)
        return document_errors(document, security=[{"KeyAuth": []}])


api = TollgateAPI(
    title="Tollgate API",
    version="1",
    description="OpenAI-compatible inference API with prepaid, per-token billing.",
    urls_namespace="v1",
    openapi_url="/openapi.json",
    docs_url="/docs",
)


def _rid(request: HttpRequest) -> str:
    return getattr(request, "request_id", "")


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError):
    return api_error_response(exc, _rid(request))


def _param_of(error: dict) -> str | None:
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "payload", "query", "path")]
    return ".".join(loc) or None


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError):
    first = exc.errors[0] if exc.errors else {}
    param = _param_of(first)
    message = first.get("msg", "Invalid request.")
    if param:
        message = f"Invalid value for '{param}': {message}"
    return error_response(400, message, code="invalid_request_error", param=param, request_id=_rid(request))


@api.exception_handler(AuthenticationError)
def _auth_error(request: HttpRequest, exc: AuthenticationError):
    return error_response(
        401,
        "Missing or invalid API key.",
        kind="invalid_request_error",
        code="invalid_api_key",
        request_id=_rid(request),
    )


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError):
    return error_response(exc.status_code, str(exc), request_id=_rid(request))


def _register_routers() -> None:
    from accounts.api import router as accounts_router
    from billing.api import router as billing_router
    from gateway.api import router as gateway_router
    from gateway.api_limits import count_request
    from webhooks.api import router as events_router

    api.add_decorator(count_request, mode="view")  # every operation counts against the key's RPM (one place)
    api.add_router("", accounts_router)
    api.add_router("", billing_router)
    api.add_router("", gateway_router)
    api.add_router("", events_router)


_register_routers()
