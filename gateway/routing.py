"""HTTP paths served by Channels consumers instead of Django's view stack (filled in by the gateway)."""

http_urlpatterns: list = []
