"""Small inline SVG charts for the dashboard: stacked bars and gauges, no library, no script.

Each function returns one ``<svg>`` element with explicit ``width``, ``height`` and ``viewBox``
(so it has a size wherever it is embedded) and ``data-plot`` naming it; every text it draws is
escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

__all__ = ["Bar", "gauge", "stacked_bars"]

#: A bar: its label and one value per series.
Bar = tuple[str, Sequence[float]]

_FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def stacked_bars(
    name: str,
    bars: Sequence[Bar],
    series: Sequence[tuple[str, str]],
    *,
    width: int = 560,
    height: int = 240,
    label_every: int = 1,
    log_scale: bool = False,
) -> str:
    """Vertical stacked bars with a value axis and a legend.

    Args:
        name: the ``data-plot`` attribute.
        bars: (label, values) per bar, one value per series, bottom first.
        series: (name, colour) per series.
        width: the width in pixels...
        height: ...and the height.
        label_every: label one bar in this many (long series).
        log_scale: a logarithmic value axis (powers of ten), for counts spanning several
            orders of magnitude (one series only).
    """
    left, right, top, bottom = 48, 8, 24, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((sum(values) for _, values in bars), default=0)
    if log_scale:
        decades = max(1, math.ceil(math.log10(max(peak, 1.0))))
        scale_top = 10.0**decades
        ticks = [10.0**k for k in range(decades + 1)]

        def to_height(value: float) -> float:
            return 0.0 if value <= 0 else plot_h * (math.log10(value) + 1) / (decades + 1)
    else:
        scale_top = _nice(peak)
        ticks = [scale_top * i / 4 for i in range(5)]

        def to_height(value: float) -> float:
            return plot_h * value / scale_top

    parts = [_open(name, width, height)]
    for value in ticks:  # value axis
        y = top + plot_h - to_height(value)
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#e3e6ea" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {_FONT} '
            f'fill="#5c6370">{_short(value)}</text>'
        )
    slot = plot_w / max(len(bars), 1)
    bar_w = max(slot * 0.72, 1.0)
    for i, (label, values) in enumerate(bars):
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h
        for (series_name, colour), value in zip(series, values, strict=True):
            h = to_height(value)
            if h > 0:
                y -= h
                parts.append(
                    f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                    f'height="{h:.1f}" fill="{colour}"><title>{escape(label)}: '
                    f"{escape(series_name)} {value:,.0f}</title></rect>"
                )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 14}" text-anchor="middle" '
                f'{_FONT} fill="#5c6370">{escape(label)}</text>'
            )
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" '
        'stroke="#8a919c" stroke-width="1"/>'
    )
    x = left
    for series_name, colour in series:  # legend
        parts.append(
            f'<rect x="{x}" y="6" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14}" y="15" {_FONT} fill="#2b2f36">{escape(series_name)}</text>'
        )
        x += 24 + 7 * len(series_name)
    parts.append("</svg>")
    return "".join(parts)


def gauge(name: str, ratio: float | None, label: str, *, size: int = 150) -> str:
    """A half-circle gauge of ``ratio`` (0 to 1): green at 100%, amber above 90%, red below.

    ``ratio`` None (nothing to measure) draws an empty gauge marked ``n/a``.
    """
    height = size * 0.72
    cx, cy, r = size / 2, size * 0.58, size * 0.42
    stroke = size * 0.11
    parts = [_open(name, size, int(height))]
    parts.append(
        f'<path class="gauge-track" d="{_arc(cx, cy, r, 1.0)}" fill="none" stroke="#e3e6ea" '
        f'stroke-width="{stroke:.1f}"/>'
    )
    if ratio is not None and ratio > 0:
        colour = "#2e9d5b" if ratio >= 1 else "#e0a100" if ratio >= 0.9 else "#d2453b"
        parts.append(
            f'<path class="gauge-value" d="{_arc(cx, cy, r, min(ratio, 1.0))}" fill="none" '
            f'stroke="{colour}" stroke-width="{stroke:.1f}"/>'
        )
    shown = "n/a" if ratio is None else f"{ratio:.0%}" if ratio in (0, 1) else f"{ratio:.1%}"
    parts.append(
        f'<text x="{cx:.1f}" y="{cy - 4:.1f}" text-anchor="middle" '
        f'font-family="system-ui, sans-serif" font-size="{size * 0.14:.0f}" font-weight="600" '
        f'fill="#2b2f36">{shown}</text>'
        f'<text x="{cx:.1f}" y="{height - 4:.1f}" text-anchor="middle" {_FONT} '
        f'fill="#5c6370">{escape(label)}</text></svg>'
    )
    return "".join(parts)


def _open(name: str, width: int, height: int) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" data-plot="{escape(name)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
    )


def _arc(cx: float, cy: float, r: float, fraction: float) -> str:
    """The path of a half circle from the left, ``fraction`` of the way round."""
    angle = math.pi * (1 - fraction)
    x, y = cx + r * math.cos(angle), cy - r * math.sin(angle)
    return f"M {cx - r:.2f} {cy:.2f} A {r:.2f} {r:.2f} 0 0 1 {x:.2f} {y:.2f}"


def _nice(peak: float) -> float:
    """A round value at or above ``peak`` for the top of an axis (at least 4)."""
    if peak <= 4:
        return 4.0
    magnitude = 10.0 ** math.floor(math.log10(peak))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= peak:
            return step * magnitude
    return 10 * magnitude


def _short(value: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"
