"""Billing's gauges for /metrics (config.metrics), read from the database at scrape time: the same figures
whichever process is scraped."""

from __future__ import annotations

from django.db.models import Count, Sum
from prometheus_client.core import GaugeMetricFamily

from billing.models import Hold, HoldStatus


class OpenHolds:
    def collect(self):
        row = Hold.objects.filter(status=HoldStatus.OPEN).aggregate(n=Count("id"), held=Sum("amount_nusd"))
        yield GaugeMetricFamily("tollgate_open_holds", "Holds placed and not yet ended.", value=row["n"] or 0)
        yield GaugeMetricFamily(
            "tollgate_held_nusd", "Credit reserved by open holds, nano-dollars.", value=row["held"] or 0
        )
