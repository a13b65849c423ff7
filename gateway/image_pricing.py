"""Prices of image models: a table of nano-dollars per image by size, and by size/quality where quality matters.

    {"1024x1024": 40_000_000, "1024x1024/hd": 80_000_000, "1792x1024": 80_000_000}

The sizes a model offers are the sizes its table names (a size nobody priced cannot be charged for). A size is
`WIDTHxHEIGHT` or a name a model declares (e.g. `auto`). A request without a quality, or with one the model
does not price separately (`standard`, `auto`), pays the size's base price; a quality the model prices for
another size only, or not at all while it prices others, is refused. Pure functions, no Django.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

SIZE = re.compile(r"^(?:[1-9][0-9]{1,4}x[1-9][0-9]{1,4}|[a-z][a-z0-9-]{0,29})$")
QUALITY = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
# Qualities that mean "whatever the model does by default": priced at the size's base price.
DEFAULT_QUALITIES = frozenset({"standard", "auto"})
STANDARD_SIZES = ("256x256", "512x512", "1024x1024", "1792x1024", "1024x1792")
DEFAULT_SIZE = "1024x1024"
MAX_PRICE_NUSD = 1_000 * 10**9  # $1,000 per image: anything above is a typo


class PriceTableError(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_table(raw: object) -> dict[str, int]:
    """Validate a price table (the model's JSON field); the table itself, or PriceTableError naming the entry."""
    if not isinstance(raw, Mapping):
        raise PriceTableError('Expected an object such as {"1024x1024": 40000000}.')
    table: dict[str, int] = {}
    for key, value in raw.items():
        size, _, quality = str(key).partition("/")
        if not SIZE.match(size):
            raise PriceTableError(f"'{key}': a size is WIDTHxHEIGHT (e.g. 1024x1024) or a lower-case name.")
        if "/" in str(key) and not QUALITY.match(quality):
            raise PriceTableError(f"'{key}': a quality is a lower-case word (e.g. 1024x1024/hd).")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PRICE_NUSD:
            raise PriceTableError(f"'{key}': the price must be a whole number of nano-dollars from 0 to $1,000.")
        table[str(key)] = value
    for key in table:
        size = key.partition("/")[0]
        if size not in table:
            raise PriceTableError(f"'{key}': give the base price of size {size} too.")
    return table


def sizes(table: Mapping[str, int]) -> list[str]:
    return [key for key in table if "/" not in key]


def qualities(table: Mapping[str, int], size: str | None = None) -> list[str]:
    found: list[str] = []
    for key in table:
        base, _, quality = key.partition("/")
        if quality and (size is None or base == size) and quality not in found:
            found.append(quality)
    return found


def default_size(table: Mapping[str, int]) -> str | None:
    offered = sizes(table)
    if DEFAULT_SIZE in offered:
        return DEFAULT_SIZE
    return offered[0] if offered else None


@dataclass(frozen=True, slots=True)
class ImagePrice:
    size: str
    quality: str  # "" for the base price
    unit_nusd: int


class Unpriced(ValueError):
    """The request asks for a size or quality the model does not offer; `param` names the field."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


def price_for(table: Mapping[str, int], *, model: str, size: str | None, quality: str | None) -> ImagePrice:
    chosen = size or default_size(table)
    if chosen is None or chosen not in table:
        offered = ", ".join(sizes(table)) or "none"
        raise Unpriced("size", f"The model '{model}' does not offer size '{size}'. Sizes: {offered}.")
    if quality and f"{chosen}/{quality}" in table:
        return ImagePrice(chosen, quality, table[f"{chosen}/{quality}"])
    if quality and quality not in DEFAULT_QUALITIES and qualities(table, chosen):
        offered = ", ".join(["standard", *qualities(table, chosen)])
        raise Unpriced(
            "quality", f"The model '{model}' does not offer quality '{quality}' at {chosen}. Qualities: {offered}."
        )
    if quality and quality not in DEFAULT_QUALITIES and qualities(table):
        raise Unpriced("quality", f"The model '{model}' does not offer quality '{quality}' at {chosen}.")
    return ImagePrice(chosen, "", table[chosen])


def dimensions(size: str) -> tuple[int, int]:
    """Pixels of a size; a named size (e.g. `auto`) renders square at the default size."""
    width, sep, height = size.partition("x")
    if sep and width.isdigit() and height.isdigit():
        return int(width), int(height)
    return 1024, 1024
