"""Money and time formatting for templates. Amounts stay integers until this last step."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django import template
from django.utils import timezone

from billing.pricing import NUSD_PER_USD, nusd_to_usd, per_million_usd

register = template.Library()


@register.filter
def usd(amount_nusd: int | None, places: int = 9) -> str:
    """'$5.00', '$4.999999802', '$0.0000198': exact to the nano-dollar by default (so sums shown match the
    receipts), trailing zeros trimmed, never fewer than two decimals."""
    if amount_nusd is None:
        return "—"
    value = (Decimal(int(amount_nusd)) / NUSD_PER_USD).quantize(Decimal(1).scaleb(-int(places)), rounding=ROUND_HALF_UP)
    text = f"{'-' if value < 0 else ''}${abs(value):,.{int(places)}f}"  # fixed-point: never "1E-9"
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    return f"{whole}.{frac.ljust(2, '0')}"


def _dollars(value: Decimal) -> str:
    """'$1.50', '-$0.000012345': every digit the Decimal holds, never fewer than two decimals."""
    whole, _, frac = f"{abs(value):f}".partition(".")
    return f"{'-' if value < 0 else ''}${whole}.{frac.ljust(2, '0')}"


@register.filter
def usd_exact(amount_nusd: int | None) -> str:
    """Every nano-dollar: '$0.000012345'."""
    return "—" if amount_nusd is None else _dollars(nusd_to_usd(int(amount_nusd)))


@register.filter
def per_million(price_nusd_per_token: int | None) -> str:
    return "—" if price_nusd_per_token is None else _dollars(per_million_usd(int(price_nusd_per_token)))


@register.filter
def until(moment: datetime | None) -> str:
    """'5 h', '12 min', '2 d' until `moment` (past → 'now')."""
    if moment is None:
        return ""
    seconds = int((moment - timezone.now()).total_seconds())
    if seconds <= 0:
        return "now"
    if seconds < 3000:  # under 50 minutes; "59 min" for a one-hour grace would read oddly
        return f"{max(1, seconds // 60)} min"
    if seconds < 2 * 86400:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} d"


@register.filter
def short_id(public_id: str) -> str:
    """'rcpt_01HX…9NHWQPK' for tables; the full id is in the title and on the detail page."""
    prefix, _, rest = public_id.partition("_")
    return f"{prefix}_…{rest[-8:]}" if len(rest) > 12 else public_id


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if mapping else None


@register.simple_tag(takes_context=True)
def query_with(context, **changes) -> str:
    """The current query string with some parameters replaced (for pagination links)."""
    params = context["request"].GET.copy()
    for name, value in changes.items():
        if value in (None, ""):
            params.pop(name, None)
        else:
            params[name] = value
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"
