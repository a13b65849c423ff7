"""Django's error views for the whole site: OpenAI's envelope under /v1 and /api, a page elsewhere.

A database or Redis that cannot be reached is a 503 with Retry-After ("briefly unavailable"), never a 500
with a traceback; the detail goes to the log."""

from __future__ import annotations

import logging
import sys

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from redis.exceptions import RedisError

from config.errors import error_response

log = logging.getLogger(__name__)

UNAVAILABLE = (OperationalError, InterfaceError, RedisError)
RETRY_AFTER = "2"


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(("/v1/", "/api/"))


def _page(request: HttpRequest, template: str, status: int, **context) -> HttpResponse:
    """Rendered without context processors: the database may be what failed."""
    context = {"request_id": getattr(request, "request_id", ""), "site_name": settings.SITE_NAME, **context}
    return HttpResponse(render_to_string(template, context), status=status)


def server_error(request: HttpRequest) -> HttpResponse:
    exc = sys.exc_info()[1]
    rid = getattr(request, "request_id", "")
    if isinstance(exc, UNAVAILABLE):
        log.warning("%s %s: a backing service is unavailable (%s)", request.method, request.path, type(exc).__name__)
        if _is_api(request):
            return error_response(
                503,
                "The service is briefly unavailable; nothing was changed. Retry in a moment.",
                kind="service_unavailable",
                code="service_unavailable",
                request_id=rid,
                headers={"Retry-After": RETRY_AFTER},
            )
        response = _page(request, "503.html", 503)
        response["Retry-After"] = RETRY_AFTER
        return response
    if _is_api(request):
        return error_response(
            500,
            "The server had an error while processing your request.",
            kind="server_error",
            code="internal_error",
            request_id=rid,
        )
    return _page(request, "500.html", 500)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        rid = getattr(request, "request_id", "")
        if isinstance(exception, RequestDataTooBig):
            return error_response(413, "The request body is too large.", code="request_too_large", request_id=rid)
        return error_response(400, "Bad request.", code="invalid_request_error", request_id=rid)
    return _page(request, "400.html", 400)
