"""Server-rendered SVG charts: no JavaScript, no chart library, the numbers also in a table beside them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from dashboard.usage import Row

WIDTH, HEIGHT = 640, 180
PAD_LEFT, PAD_BOTTOM, PAD_TOP = 64, 24, 10


def _nice_max(value: int) -> int:
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 2.5, 5, 10):
        candidate = int(step * magnitude)
        if candidate >= value:
            return candidate
    return 10 * magnitude


def bar_chart(rows: Sequence[Row], metric: str, fmt: Callable[[int], str], *, title: str) -> SafeString:
    """Vertical bars, one per row (day). Every bar carries a <title> with its exact value."""
    values = [getattr(r, metric) for r in rows]
    top = _nice_max(max(values, default=0))
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    n = max(len(rows), 1)
    slot = plot_w / n
    bar_w = max(1.0, slot * 0.72)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">',
    ]
    for i in range(5):  # grid lines and y labels at 0, ¼ … top
        value = top * i // 4
        y = PAD_TOP + plot_h - plot_h * i / 4
        parts.append(f'<line class="grid" x1="{PAD_LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(fmt(value))}</text>'
        )
    label_every = max(1, n // 8)
    for i, (row, value) in enumerate(zip(rows, values, strict=True)):
        h = plot_h * value / top if top else 0
        x = PAD_LEFT + i * slot + (slot - bar_w) / 2
        y = PAD_TOP + plot_h - h
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{max(h, 0):.1f}" rx="2">'
            f"<title>{escape(row.label)}: {escape(fmt(value))}</title></rect>"
        )
        if (n - 1 - i) % label_every == 0:  # counted from the last bar, so the newest day (today) is labelled
            parts.append(
                f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
                f"{escape(row.label)}</text>"
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 — every interpolated text is escaped above


def share_bars(rows: Sequence[Row], metric: str) -> list[tuple[Row, int]]:
    """(row, percent of the largest) for the inline horizontal bars of breakdown tables."""
    top = max((getattr(r, metric) for r in rows), default=0)
    return [(r, round(100 * getattr(r, metric) / top) if top else 0) for r in rows]


def hbar_chart(rows: Sequence[Row], metric: str, fmt: Callable[[int], str], *, title: str) -> SafeString:
    """Horizontal bars for a breakdown (by model, by key)."""
    rows = list(rows)[:10]
    row_h, label_w, width = 30, 150, 520
    height = max(row_h * len(rows) + 8, 36)
    top = max((getattr(r, metric) for r in rows), default=0) or 1
    parts = [
        f'<svg class="chart hchart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, row in enumerate(rows):
        value = getattr(row, metric)
        y = 4 + i * row_h
        w = (width - label_w - 110) * max(value, 0) / top  # a negative value (a margin) shows as no bar
        label = row.label if len(row.label) <= 24 else row.label[:23] + "…"
        parts.append(
            format_html(
                '<text class="axis label" x="0" y="{}">{}</text>'
                '<rect class="bar" x="{}" y="{}" width="{}" height="18" rx="3"><title>{}: {}</title></rect>'
                '<text class="axis" x="{}" y="{}">{}</text>',
                f"{y + 13:.0f}",
                label,
                label_w,
                f"{y:.0f}",
                f"{max(w, 1):.1f}",
                row.label,
                fmt(value),
                f"{label_w + w + 6:.1f}",
                f"{y + 13:.0f}",
                fmt(value),
            )
        )
    parts.append("</svg>")
    return mark_safe("".join(str(p) for p in parts))  # noqa: S308 — format_html escaped each value


def pair_chart(
    rows: Sequence, first: str, second: str, fmt: Callable[[int], str], *, title: str, names: tuple[str, str]
):
    """Two bars per row (day), side by side, on one scale: e.g. revenue and upstream cost, the gap their margin."""
    pairs = [(getattr(r, first), getattr(r, second)) for r in rows]
    top = _nice_max(max((max(a, b) for a, b in pairs), default=0))
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    n = max(len(rows), 1)
    slot = plot_w / n
    bar_w = max(0.5, slot * 0.36)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">',
    ]
    for i in range(5):
        value = top * i // 4
        y = PAD_TOP + plot_h - plot_h * i / 4
        parts.append(f'<line class="grid" x1="{PAD_LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(fmt(value))}</text>'
        )
    label_every = max(1, n // 8)
    for i, (row, (a, b)) in enumerate(zip(rows, pairs, strict=True)):
        x = PAD_LEFT + i * slot + (slot - 2 * bar_w) / 2
        for j, (value, css, name) in enumerate(((a, "bar", names[0]), (b, "bar alt", names[1]))):
            h = plot_h * max(value, 0) / top if top else 0
            parts.append(
                f'<rect class="{css}" x="{x + j * bar_w:.1f}" y="{PAD_TOP + plot_h - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" rx="1"><title>{escape(row.label)} {escape(name)}: {escape(fmt(value))}'
                "</title></rect>"
            )
        if (n - 1 - i) % label_every == 0:
            parts.append(
                f'<text class="axis" x="{x + bar_w:.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
                f"{escape(row.label)}</text>"
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 — every interpolated text is escaped above
