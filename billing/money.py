"""How money leaves the system. Amounts are integers of nano-dollars everywhere inside; there are exactly
two ways to write one out:

- `exact(nusd)`: the exact amount of dollars as digits (1234 → `0.000001234`), for API bodies
  (`json_number` wraps it in orjson.Fragment so it is written as a JSON number, never through a float), CSV
  cells and price strings;
- `usd(nusd)`: what people read on pages, in emails, the admin and error messages (`$1,234.50`,
  `$0.000012345`): every nano-dollar shown, trailing zeros trimmed, never fewer than two decimals.

Unit prices are stored per token and shown per million tokens: `usd(per_million(price))`.
"""

from __future__ import annotations

import orjson

NUSD_PER_USD = 1_000_000_000
NUSD_PER_CENT = 10_000_000
TOKENS_PER_MILLION = 1_000_000


def _digits(amount_nusd: int) -> tuple[str, str, str]:
    """(sign, whole dollars, nano-dollar fraction without trailing zeros)."""
    amount_nusd = int(amount_nusd)
    sign = "-" if amount_nusd < 0 else ""
    whole, frac = divmod(abs(amount_nusd), NUSD_PER_USD)
    return sign, str(whole), f"{frac:09d}".rstrip("0")


def exact(amount_nusd: int) -> str:
    """Dollars, every digit: 1234 nusd → '0.000001234', 1_500_000_000 → '1.5', 0 → '0'."""
    sign, whole, frac = _digits(amount_nusd)
    return f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"


def json_number(amount_nusd: int) -> orjson.Fragment:
    """`exact` as a JSON number (orjson writes the fragment as it is)."""
    return orjson.Fragment(exact(amount_nusd).encode())


def usd(amount_nusd: int | None) -> str:
    """'$5.00', '$4.999999802', '-$0.0000198', '$1,234.50'; None → '—'."""
    if amount_nusd is None:
        return "—"
    sign, whole, frac = _digits(amount_nusd)
    return f"{sign}${int(whole):,}.{frac.ljust(2, '0')}"


def per_million(price_nusd_per_token: int) -> int:
    """A unit price per token → the price of a million tokens (still nano-dollars)."""
    return int(price_nusd_per_token) * TOKENS_PER_MILLION
