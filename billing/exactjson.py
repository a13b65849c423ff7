"""JSON with money as exact numbers: a Decimal is written digit for digit as a JSON number, never through a
float (1.1 USD stays `1.1`, a nano-dollar stays `0.000000001`). Floats are refused outright."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

from django.http import HttpResponse

_SCALARS = (str, int, bool, type(None))


def dumps(value) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("money must be finite")
        return format(value, "f")
    if isinstance(value, _SCALARS):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, datetime | date):
        return json.dumps(value.isoformat())
    raise TypeError(f"{type(value).__name__} is not allowed in an exact-money JSON body")


def response(value, *, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    resp = HttpResponse(dumps(value), status=status, content_type="application/json")
    for name, header in (headers or {}).items():
        resp[name] = header
    return resp
