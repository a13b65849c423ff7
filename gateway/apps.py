from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from config import lifespan
        from gateway import (
            checks,  # noqa: F401  (registers the system checks)
            shutdown,
        )

        lifespan.on_shutdown(shutdown.finish_requests_work, order=10)
