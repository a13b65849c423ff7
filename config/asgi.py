"""ASGI entry point: the charging /v1 operations go to the pipeline's transport (gateway/urls.py), websockets to
the dashboard's consumer, everything else to Django; lifespan events to config/lifespan.py."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402

from config.lifespan import Lifespan, on_first_request  # noqa: E402
from dashboard.routing import websocket_urlpatterns  # noqa: E402
from gateway.urls import http_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Channels routes ASGI applications with re_path; django-stubs types it for views only
        "http": on_first_request(URLRouter([*http_urlpatterns, re_path(r"", django_asgi_app)])),  # type: ignore[arg-type]
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        "lifespan": Lifespan(),
    }
)
