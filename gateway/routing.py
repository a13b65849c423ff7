"""HTTP paths served by Channels consumers instead of Django's view stack: the three inference POSTs.

Everything else under /v1 (models, providers, estimates, stored completions, OpenAPI) is served by the
ninja API in gateway/api.py, which runs the same service code.
"""

from django.urls import path

from gateway.consumers import ChatCompletionsConsumer, CompletionsConsumer, EmbeddingsConsumer

http_urlpatterns: list = [
    path("v1/chat/completions", ChatCompletionsConsumer.as_asgi()),
    path("v1/completions", CompletionsConsumer.as_asgi()),
    path("v1/embeddings", EmbeddingsConsumer.as_asgi()),
]
