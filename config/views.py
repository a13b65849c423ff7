"""Pages of last resort. The 500 page names the request id (the log has the detail under it) and renders
without context processors: the database may be what failed."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponseServerError
from django.template import loader


def server_error(request, *args, **kwargs):
    context = {"request_id": getattr(request, "request_id", ""), "site_name": settings.SITE_NAME}
    html = loader.get_template("500.html").render(context)
    return HttpResponseServerError(html)
