"""Prometheus metrics: the names every app counts with, and `GET /metrics`.

With N server processes (uvicorn --workers, several hosts' processes behind a load balancer each with its own
scrape), set PROMETHEUS_MULTIPROC_DIR to a directory the processes of one host share, the Celery worker's too
(deploy/ uses /run/tollgate/metrics, emptied at boot; a process that ends leaves its counts there, so totals never
go down): the client library then keeps each process's values in files there and `/metrics` on any of them reports
the sum (prometheus_client's multiprocess mode). Without it, one process's own values are reported (the embedded
default).

Labels are bounded: endpoints are the operations' names, models are catalog ids ("unknown" otherwise), providers
and routes come from the catalog. What only the database knows (open holds, held credit: billing/metrics.py) and the
broker's queue length are read at scrape time, so every process reports the same truth.

`/metrics` is never public by default: it answers with METRICS_TOKEN as a Bearer token, or from an address in
METRICS_ALLOWED_IPS; with neither set it is 404.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from config.net import client_ip_from_request, parse_networks

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
if MULTIPROCESS:  # each process writes its values there from the first metric defined below on
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

requests = Counter(
    "tollgate_requests_total", "Charging /v1 requests answered.", ["endpoint", "model", "status_class", "mode"]
)
request_seconds = Histogram(
    "tollgate_request_duration_seconds",
    "Time to the end of the response (plain) or of the stream.",
    ["endpoint"],
    buckets=_LATENCY,
)
first_byte_seconds = Histogram(
    "tollgate_stream_first_byte_seconds", "Time to a stream's first upstream chunk.", ["endpoint"], buckets=_LATENCY
)
upstream_attempts = Counter(
    "tollgate_upstream_attempts_total", "Calls to an upstream route.", ["provider", "route", "outcome"]
)
upstream_errors = Counter(
    "tollgate_upstream_errors_total", "Failed calls to an upstream route.", ["provider", "route", "kind"]
)
breaker_open = Gauge(
    "tollgate_circuit_breaker_open",
    "1 while a route's circuit breaker is open (in any process).",
    ["route"],
    multiprocess_mode="max",
)
settlements_retried = Counter(
    "tollgate_settlements_retried_total", "Money writes retried because the database was away."
)
settlements_given_up = Counter(
    "tollgate_settlements_given_up_total", "Money writes that could never succeed (their holds were released)."
)
spend_nusd = Counter("tollgate_spend_nusd_total", "Nano-dollars charged to teams' wallets.", ["model"])
rate_limited = Counter("tollgate_rate_limited_total", "Requests refused by a rate limit.", ["exceeded"])
insufficient_balance = Counter("tollgate_insufficient_balance_total", "Requests refused with 402.", ["code"])
webhook_deliveries = Counter("tollgate_webhook_deliveries_total", "Webhook delivery attempts.", ["outcome"])
image_jobs = Counter("tollgate_image_jobs_total", "Image jobs that reached a terminal status.", ["status"])


def status_class(status: int) -> str:
    return f"{status // 100}xx"


# Labelled children, per metric and label values, so the hot path finds its child with one dict lookup instead
# of prometheus_client's checks, str() of every value and lock on each request. Label values are bounded (see
# above), so is this.
_children: dict[tuple, Any] = {}


def child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, cached; labels must already be strings."""
    key = (metric, labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


# Collectors apps add (billing: open holds and held credit), run at every scrape in the scraped process.
scrape_collectors: list = []


class _QueueLength:
    def collect(self):
        length = _queue_length()
        if length is not None:
            yield GaugeMetricFamily("tollgate_celery_queue_length", "Tasks waiting in the Celery queue.", value=length)


def _queue_length() -> int | None:
    if settings.BACKGROUND_RUNNER != "celery" or not settings.REDIS_URL:
        return None
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        return int(client.llen(getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")))
    except redis.RedisError:
        return None
    finally:
        client.close()


def _allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        sent = request.headers.get("Authorization", "")
        if sent.startswith("Bearer ") and hmac.compare_digest(sent[7:].strip().encode(), token.encode()):
            return True
    if settings.METRICS_ALLOWED_IPS:
        try:
            address = ipaddress.ip_address(client_ip_from_request(request) or "")
        except ValueError:
            return False
        return any(address in net for net in parse_networks(settings.METRICS_ALLOWED_IPS))
    return False


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not (settings.METRICS_TOKEN or settings.METRICS_ALLOWED_IPS):
        raise Http404("Metrics are not enabled.")
    if not _allowed(request):
        return HttpResponse("Forbidden\n", status=403, content_type="text/plain")
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = CollectorRegistry()
        registry.register(_Delegate(REGISTRY))
    registry.register(_QueueLength())
    for collector in scrape_collectors:
        registry.register(collector)
    return HttpResponse(generate_latest(registry), content_type="text/plain; version=0.0.4; charset=utf-8")


class _Delegate:
    """This process's own metrics (the default registry) inside a per-scrape registry."""

    def __init__(self, registry) -> None:
        self.registry = registry

    def collect(self):
        return self.registry.collect()
