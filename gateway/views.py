"""The anonymous-read links of generated images (gateway.image_files): no API key, a signed token in the path."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.http import http_date
from django.views.decorators.http import require_safe

from config.db import run_db
from config.errors import ApiError, api_error_response
from gateway import image_files


@require_safe
async def image_file(request: HttpRequest, name: str) -> HttpResponse:
    try:
        served = await run_db(image_files.open_link, name)
    except ApiError as exc:
        return api_error_response(exc, getattr(request, "request_id", ""))
    remaining = max(0, int((served.expires_at - timezone.now()).total_seconds()))
    response = HttpResponse(served.data, content_type=served.content_type)
    # Cacheable by the browser until the link expires, never by a shared cache (the link is the secret).
    response["Cache-Control"] = f"private, max-age={remaining}"
    response["Expires"] = http_date(served.expires_at.timestamp())
    response["Content-Security-Policy"] = "default-src 'none'"
    response["X-Robots-Tag"] = "noindex"
    return response
