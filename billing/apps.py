from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from billing import receivers  # noqa: F401  (connects the auto-recharge check to receipt_settled)
        from billing.metrics import OpenHolds
        from config import metrics

        if not any(isinstance(c, OpenHolds) for c in metrics.scrape_collectors):
            metrics.scrape_collectors.append(OpenHolds())
        from billing.leases import close_process
        from config import lifespan

        lifespan.on_shutdown(close_process, order=90)
