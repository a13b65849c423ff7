"""Money and time formatting for templates. Amounts stay integers until this last step."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

from billing import money

register = template.Library()


@register.filter
def usd(amount_nusd: int | None) -> str:
    """Every nano-dollar, as people read it: '$5.00', '$0.000012345' (billing.money.usd)."""
    return money.usd(None if amount_nusd is None else int(amount_nusd))


@register.filter
def per_million(price_nusd_per_token: int | None) -> str:
    """A per-token price as the price of a million tokens: '$0.50'."""
    return "—" if price_nusd_per_token is None else money.usd(money.per_million(price_nusd_per_token))


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
def ago(moment: datetime | None) -> str:
    """'just now' under a minute (never "0 minutes ago"), else '5 minutes ago', '3 days ago'."""
    if moment is None:
        return ""
    if (timezone.now() - moment).total_seconds() < 60:
        return "just now"
    return f"{timesince(moment, depth=1)} ago"


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
