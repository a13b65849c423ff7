"""The HTTP paths served by the pipeline's transport instead of Django's view stack: every charging /v1
operation (gateway/operations) at its path, and its estimate at `{path}/estimate` (or its own `estimate_path`).

Everything else under /v1 (models, providers, stored completions, balance, receipts, image jobs, the OpenAPI
document) is served by the ninja API (config/api.py), which runs Django's view stack. An operation whose path
also has reads (`GET /v1/images` lists the jobs `POST /v1/images` creates) sets `shares_path`: only its POSTs
come here, other methods go on to Django.
"""

from django.core.handlers.asgi import ASGIHandler
from django.urls import path

from gateway.operations import OPERATIONS
from gateway.transport import V1Consumer


class _PostOnly:
    """POST to the transport, any other method to Django's view stack."""

    def __init__(self, consumer) -> None:
        self.consumer = consumer
        self.django: ASGIHandler | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["method"] == "POST":
            await self.consumer(scope, receive, send)
            return
        if self.django is None:
            self.django = ASGIHandler()
        await self.django(scope, receive, send)


http_urlpatterns: list = []
for _op in OPERATIONS:
    _app = V1Consumer.as_asgi(op=_op)
    # Channels routes ASGI apps with Django's path(); django-stubs only knows views.
    http_urlpatterns.append(path(_op.path.removeprefix("/"), _PostOnly(_app) if _op.shares_path else _app))  # type: ignore[arg-type]
    if _op.has_estimate:
        _estimate = (_op.estimate_path or _op.path + "/estimate").removeprefix("/")
        http_urlpatterns.append(path(_estimate, V1Consumer.as_asgi(op=_op.estimator(), estimate=True)))
