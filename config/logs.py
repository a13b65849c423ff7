"""Logs: one JSON object per line in production (LOG_FORMAT=json), readable text in the embedded default.

Every line logged while a /v1 request is served carries that request's id (and, once known, the team's and
key's public ids, the model and the route), from a context variable the transport sets; an access line per
request (logger `tollgate.access`) adds the status and the latency. Lines never carry a secret, a prompt or a
completion: nothing here logs request or response bodies.
"""

from __future__ import annotations

import contextvars
import logging
from datetime import UTC, datetime

import orjson

# The fields of the request being served (request_id, team, key, model, route), or empty.
request_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("tollgate_request_context")

CONTEXT_FIELDS = ("request_id", "team", "key", "model", "route")
ACCESS_FIELDS = ("method", "path", "status", "latency_ms")
access = logging.getLogger("tollgate.access")


def start_request(request_id: str) -> dict[str, str]:
    """Bind a request's context for the rest of this task (and the threads it hands work to)."""
    fields = {"request_id": request_id}
    request_context.set(fields)
    return fields


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        fields = request_context.get(None)
        if fields:
            for name in CONTEXT_FIELDS:
                if name in fields and not hasattr(record, name):
                    setattr(record, name, fields[name])
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*CONTEXT_FIELDS, *ACCESS_FIELDS):
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """The embedded default: the usual line, with the request id when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{text} [{rid}]" if rid else text
