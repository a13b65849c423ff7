"""Output: tables and key/value blocks for people (rich; colour only on a terminal, and never with
NO_COLOR), JSON for scripts (`--json`), messages on stderr so stdout carries only the result.

Money arrives as exact JSON numbers parsed into `Decimal` (or `int` for whole dollars) and leaves the
same way: `exact()` for JSON and CSV, `usd()` for people (the server's `billing.money.usd` rules:
every digit, trailing zeros trimmed, at least two decimals, thousands separated).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, TextIO

import orjson
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

WIDE = 240  # not a terminal: do not wrap table rows at 80 columns for grep and friends


def exact(amount: int | Decimal | None) -> str:
    """'0.000001234', '5', '1.5': the amount's digits, never scientific notation, never via a float."""
    if amount is None:
        return ""
    return format(Decimal(amount), "f")


def usd(amount: int | Decimal | None) -> str:
    """'$5.00', '$4.999999802', '-$0.0000198', '$1,234.50'; None → '—'."""
    if amount is None:
        return "—"
    value = Decimal(amount)
    sign = "-" if value < 0 else ""
    whole, _, frac = format(abs(value), "f").partition(".")
    return f"{sign}${int(whole):,}.{frac.rstrip('0').ljust(2, '0')}"


def _decimal(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(exact(value).encode())
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> str:
    return orjson.dumps(value, default=_decimal, option=orjson.OPT_INDENT_2).decode()


def when(iso: str | None) -> str:
    """'2025-01-31T12:00:00.123456Z' → '2025-01-31 12:00:00Z' (UTC as the server gives it)."""
    if not iso:
        return "—"
    date, _, rest = str(iso).partition("T")
    clock = rest[:8]
    return f"{date} {clock}Z" if clock else date


def _console(stream: TextIO) -> Console:
    terminal = stream.isatty()
    return Console(
        file=stream,
        markup=False,  # model names, key names and prompts are data, never markup
        highlight=False,
        emoji=False,
        soft_wrap=not terminal,
        width=None if terminal else WIDE,
    )


class Output:
    """Where a command writes. `json` mode puts exactly one JSON document on stdout."""

    def __init__(self, *, json_mode: bool = False, stdout: TextIO | None = None, stderr: TextIO | None = None):
        self.json_mode = json_mode
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.out = _console(self.stdout)
        self.err = _console(self.stderr)

    # -- scripts ------------------------------------------------------------------------------------

    def json(self, value: Any) -> None:
        self.stdout.write(dumps(value) + "\n")
        self.stdout.flush()

    # -- people -------------------------------------------------------------------------------------

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]], *, right: Iterable[str] = ()) -> None:
        align_right = set(right)
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
        for header in headers:
            table.add_column(header, justify="right" if header in align_right else "left", overflow="fold")
        for row in rows:
            table.add_row(*(Text(str(cell)) for cell in row))
        self._print(table)

    def fields(self, pairs: Iterable[tuple[str, Any]]) -> None:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column(overflow="fold")
        for name, value in pairs:
            grid.add_row(Text(name), Text(str(value)))
        self._print(grid)

    def _print(self, renderable: Any) -> None:
        if self.out.is_terminal:
            self.out.print(renderable)
            return
        with self.out.capture() as captured:  # rich pads cells to the column width; a pipe gets no trailing blanks
            self.out.print(renderable)
        self.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
        self.stdout.flush()

    def line(self, text: str = "") -> None:
        self.out.print(Text(text))

    # -- stderr -------------------------------------------------------------------------------------

    def note(self, text: str) -> None:
        self.err.print(Text(text, style="dim"))

    def warn(self, text: str) -> None:
        self.err.print(Text(text, style="yellow"))

    def error(self, text: str) -> None:
        self.err.print(Text(f"error: {text}", style="red"))


NUSD_PER_USD = 10**9  # the server's unit (nano-dollars) where its API takes integers, e.g. spend caps


def nusd_as_usd(amount_nusd: int | None) -> Decimal | None:
    return None if amount_nusd is None else Decimal(amount_nusd).scaleb(-9)


def usage_line(usage: dict | None) -> str:
    """'12 prompt tokens (3 cached) + 30 completion = 42 · $0.000051 · rcpt_…' from a usage block."""
    if not usage:
        return "no usage reported"
    prompt = usage.get("prompt_tokens", 0)
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    parts = [f"{prompt} prompt tokens" + (f" ({cached} cached)" if cached else "")]
    if "completion_tokens" in usage:
        parts.append(f"{usage['completion_tokens']} completion = {usage.get('total_tokens', 0)} tokens")
    text = " + ".join(parts)
    if "total_cost_usd" in usage:
        text += f" · {usd(usage['total_cost_usd'])}"
    if usage.get("receipt_id"):
        text += f" · {usage['receipt_id']}"
    return text
