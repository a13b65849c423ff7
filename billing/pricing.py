"""Pure cost maths in integer nano-dollars. No Django, no floats.

Prices are stored per token in nusd and shown per million tokens in USD.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from billing.money import NUSD_PER_USD, TOKENS_PER_MILLION


@dataclass(frozen=True, slots=True)
class Prices:
    """Unit prices in nusd per token, and per image for image models."""

    input_nusd: int
    output_nusd: int
    cached_nusd: int = 0
    image_nusd: int = 0  # per image produced (the model's price for the requested size and quality)


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int  # uncached prompt tokens
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens served from the provider's cache
    images: int = 0  # images produced

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.cached_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Cost:
    input_nusd: int  # prompt + cached prompt
    output_nusd: int

    @property
    def total_nusd(self) -> int:
        return self.input_nusd + self.output_nusd


def cost_of(usage: Usage, prices: Prices) -> Cost:
    """Exact: integer tokens (and images) times integer unit prices, so nothing is rounded at all. Images are
    output: their cost is part of the output cost."""
    for value in (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens, usage.images):
        if value < 0:
            raise ValueError("token and image counts cannot be negative")
    return Cost(
        input_nusd=usage.prompt_tokens * prices.input_nusd + usage.cached_tokens * prices.cached_nusd,
        output_nusd=usage.completion_tokens * prices.output_nusd + usage.images * prices.image_nusd,
    )


def hold_amount(*, prompt_tokens_estimate: int, max_output_tokens: int, prices: Prices, max_images: int = 0) -> int:
    """Upper bound for a request: every prompt token at the uncached price plus the full output budget (and
    every image it may produce)."""
    usage = Usage(prompt_tokens=prompt_tokens_estimate, completion_tokens=max_output_tokens, images=max_images)
    return cost_of(usage, prices).total_nusd


def usd_to_nusd(amount: Decimal | str | int) -> int:
    """Exact conversion; refuses amounts finer than one nano-dollar rather than rounding them away."""
    value = Decimal(str(amount)) * NUSD_PER_USD
    if value != value.to_integral_value():
        raise ValueError(f"{amount} USD is not a whole number of nano-dollars")
    return int(value)


def nusd_to_usd(amount_nusd: int) -> Decimal:
    """Exact Decimal dollars (never a float): 1_500_000_000 -> Decimal('1.5')."""
    return (Decimal(amount_nusd) / NUSD_PER_USD).normalize() if amount_nusd else Decimal(0)


def per_million_usd(price_nusd_per_token: int) -> Decimal:
    """A unit price as shown to people: USD per million tokens."""
    return nusd_to_usd(price_nusd_per_token * TOKENS_PER_MILLION)


def per_million_to_per_token_nusd(usd_per_million: Decimal | str) -> int:
    """Operator input ($ per million tokens) to the stored unit; must be exact."""
    value = Decimal(str(usd_per_million)) * NUSD_PER_USD / TOKENS_PER_MILLION
    if value != value.to_integral_value():
        raise ValueError(f"${usd_per_million}/M tokens is not a whole number of nano-dollars per token")
    return int(value)
