"""Per-request cost caps: `Tollgate-Max-Cost: <usd>` (header) or `max_cost_usd` (body field, never sent upstream)
on any charging endpoint, else the key's default cap.

The pipeline keeps the request inside its cap three ways:
- the hold never exceeds it: the output budget (`max_tokens`, `max_output_tokens`, …) is clamped to what the cap
  affords after the prompt (`Operation.fit_cost`); 400 `max_cost_too_low` when not even the prompt (or the images
  asked for) fits;
- a stream is cut, ending as if its max tokens were reached, when the next chunk would take its cost past its hold
  (which is within the cap): `Meter`, counted exactly as the settlement of a cut stream prices it, so an upstream
  that ignores `max_tokens` still never delivers more than the cap pays for;
- a receipt is never above its hold (billing.settlement.price), so never above the cap.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from billing import pricing
from billing.money import NUSD_PER_USD
from config.errors import ApiError
from gateway.tokens import RunningCount

HEADER = "tollgate-max-cost"
FIELD = "max_cost_usd"
MAX_CAP_NUSD = 1_000_000 * NUSD_PER_USD  # a million dollars per request: beyond is a typo


def _parse(raw: Any, *, param: str) -> int:
    """Dollars as a JSON number or a string ("0.05"): a positive whole number of nano-dollars."""
    problem = f"Invalid value for '{param}': a positive amount in US dollars with at most 9 decimal places, e.g. 0.05."
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ApiError(400, "invalid_request_error", problem, param=param)
    try:
        amount = Decimal(str(raw).strip())
    except InvalidOperation:
        raise ApiError(400, "invalid_request_error", problem, param=param) from None
    if not amount.is_finite():
        raise ApiError(400, "invalid_request_error", problem, param=param)
    nusd = amount * NUSD_PER_USD
    if nusd != nusd.to_integral_value() or not 0 < nusd <= MAX_CAP_NUSD:
        raise ApiError(400, "invalid_request_error", problem, param=param)
    return int(nusd)


def requested(headers: dict[str, str], payload: dict[str, Any]) -> int | None:
    """The request's own cap in nano-dollars (the stricter one if both are sent); takes the field out of the body."""
    caps = []
    if HEADER in headers:
        caps.append(_parse(headers[HEADER], param="Tollgate-Max-Cost"))
    if FIELD in payload:
        value = payload.pop(FIELD)
        if value is not None:
            caps.append(_parse(value, param=FIELD))
    return min(caps) if caps else None


def too_low(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, "max_cost_too_low", message, param=param or FIELD)


def affordable_output(*, cap_nusd: int, prompt_nusd: int, output_price_nusd: int, choices: int) -> int:
    """How many output tokens per choice fit the cap after the prompt (a hold counts every choice's budget)."""
    if output_price_nusd <= 0:
        return 2**62
    return max(0, cap_nusd - prompt_nusd) // (output_price_nusd * max(1, choices))


class Meter:
    """What a stream under a cost cap has produced, as its settlement prices it if the stream is cut: our count
    of the prompt at the input price plus the text relayed so far, counted as one text, at the output price. The
    limit is the request's hold (at most its cap), so a cut stream is charged exactly what was counted."""

    __slots__ = ("count", "limit_nusd", "output_price_nusd", "prompt_nusd", "prompt_tokens")

    def __init__(self, *, limit_nusd: int, prompt_tokens: int, prices: pricing.Prices) -> None:
        self.limit_nusd = limit_nusd
        self.prompt_tokens = prompt_tokens
        self.prompt_nusd = prompt_tokens * prices.input_nusd
        self.output_price_nusd = prices.output_nusd
        self.count = RunningCount()

    def admit(self, text: str) -> bool:
        """Count `text` if relaying it keeps the cost within the cap; False (nothing counted) if it would not."""
        if not text:
            return True
        if self.prompt_nusd + self.count.peek(text) * self.output_price_nusd > self.limit_nusd:
            return False
        self.count.add(text)
        return True

    def usage(self) -> pricing.Usage:
        return pricing.Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.count.tokens)
