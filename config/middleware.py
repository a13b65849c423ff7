"""Request ids on every response, the API version on every /v1 response, and OpenAI's error envelope for anything
under /v1."""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from config import versions
from config.errors import ApiError, api_error_response, error_response
from config.ids import request_id

_V1_FALLBACK = {
    404: ("Unknown API route.", "invalid_request_error", "not_found"),
    405: ("Method not allowed for this route.", "invalid_request_error", "method_not_allowed"),
    500: ("The server had an error while processing your request.", "server_error", "internal_error"),
}


def _finish(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    rid = request.request_id  # type: ignore[attr-defined]
    if (
        response.status_code in _V1_FALLBACK
        and request.path.startswith("/v1/")
        and not getattr(response, "is_envelope", False)
        and not getattr(response, "streaming", False)
    ):
        message, kind, code = _V1_FALLBACK[response.status_code]
        response = error_response(response.status_code, message, kind=kind, code=code, request_id=rid)
        if response.status_code == 405:
            response["Allow"] = ""
    response["X-Request-Id"] = rid
    if request.path.startswith("/v1/"):
        response[versions.HEADER] = getattr(request, "api_version", versions.CURRENT)
    return response


def _refuse_unknown_version(request: HttpRequest) -> HttpResponse | None:
    """An unknown Tollgate-Version is refused before the request reaches any view."""
    if not request.path.startswith("/v1/"):
        return None
    try:
        request.api_version = versions.resolve(request.headers.get(versions.HEADER))  # type: ignore[attr-defined]
    except ApiError as exc:
        return api_error_response(exc, request.request_id)  # type: ignore[attr-defined]
    return None


def _versioned(get_response):
    """`get_response`, answering an unknown Tollgate-Version itself before any view runs."""
    if iscoroutinefunction(get_response):

        async def aget(request: HttpRequest):
            return _refuse_unknown_version(request) or await get_response(request)

        return aget

    def get(request: HttpRequest):
        return _refuse_unknown_version(request) or get_response(request)

    return get


class RequestIdMiddleware:
    """Gives each request a `req_<ULID>` id (request.request_id) and echoes it in X-Request-Id."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = _versioned(get_response)
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        request.request_id = request_id()  # type: ignore[attr-defined]
        return _finish(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest):
        request.request_id = request_id()  # type: ignore[attr-defined]
        return _finish(request, await self.get_response(request))


# Pages run no inline script (static/js/app.js is the only script) and load nothing from other origins.
# Inline style attributes are allowed: they carry no code.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)


class ContentSecurityPolicyMiddleware:
    """A Content-Security-Policy on every HTML page (above all the ones that show a secret once)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    @staticmethod
    def _add(response: HttpResponse) -> HttpResponse:
        if response.get("Content-Type", "").startswith("text/html") and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        return self._add(self.get_response(request))

    async def __acall__(self, request: HttpRequest):
        return self._add(await self.get_response(request))
