"""The HTTP paths served by the pipeline's transport instead of Django's view stack: every charging /v1
operation (gateway/operations) at its path, and its estimate at `{path}/estimate` (or its own `estimate_path`).

Everything else under /v1 (models, providers, stored completions, balance, receipts, the OpenAPI document)
is served by the ninja API (config/api.py), which runs Django's view stack.
"""

from django.urls import path

from gateway.operations import OPERATIONS
from gateway.transport import V1Consumer

http_urlpatterns: list = []
for _op in OPERATIONS:
    http_urlpatterns.append(path(_op.path.removeprefix("/"), V1Consumer.as_asgi(op=_op)))
    if _op.has_estimate:
        _estimate = (_op.estimate_path or _op.path + "/estimate").removeprefix("/")
        http_urlpatterns.append(path(_estimate, V1Consumer.as_asgi(op=_op.estimator(), estimate=True)))
