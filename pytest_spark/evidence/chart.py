"""A time-series line chart as a self-contained SVG, for the evidence of a canary stage.

One polyline per series (``canary``, ``stable``, ...) in distinct colours with a legend, the
threshold as a dashed line labelled with its value, x in seconds from the first point, y from
0 to 1.1 × the largest of the values and the threshold. No script and no external reference:
the file is opened from a bundle, offline, years later, and must render the same.

Hand-written on purpose: a plotting library such as matplotlib is about 40 MB of dependency
(with NumPy) for a few polylines in a report, and its SVG output changes between versions,
which would change the bytes of signed evidence for no reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from xml.sax.saxutils import escape

# Colour-blind-safe (Okabe–Ito), in legend order.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
THRESHOLD_COLOUR = "#B00020"
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 16, 40, 36
FONT = 'font-family="sans-serif" font-size="11"'
# Characters XML 1.0 cannot hold at all, escaped or not.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: object) -> str:
    return escape(_NOT_XML.sub("", str(value)), {'"': "&quot;"})


def _number(value: float) -> str:
    """An axis or threshold label: short, no float noise (0.30000000000000004 -> 0.3)."""
    return f"{value:.4g}"


def nice_step(span: float, ticks: int = 4) -> float:
    """The smallest round step (1, 2 or 5 × 10^n) that cuts ``span`` into at most ``ticks``
    intervals."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    return float(next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw))


def line_chart(
    title: str,
    unit: str,
    series: Mapping[str, Sequence[tuple[float, float]]],
    threshold: float | None,
    *,
    width: int = 640,
    height: int = 240,
) -> str:
    """The SVG text of ``series`` (name -> ``(x, y)`` points, x in seconds, e.g. Unix time)
    against ``threshold`` (None: no line). Points with a NaN or infinite coordinate are
    skipped; when no series has a point left, the chart says "no data"."""
    points = {
        name: sorted((x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y))
        for name, pts in series.items()
    }
    if threshold is not None and not math.isfinite(threshold):
        threshold = None
    left, top = MARGIN_LEFT, MARGIN_TOP
    plot_w, plot_h = width - MARGIN_LEFT - MARGIN_RIGHT, height - MARGIN_TOP - MARGIN_BOTTOM
    bottom = top + plot_h
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_text(title)}">',
        f"<title>{_text(title)}</title>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{left}" y="16" font-family="sans-serif" font-size="13" font-weight="bold">'
        f"{_text(title)}</text>",
        f'<rect class="plot" x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" '
        'fill="none" stroke="#999999" stroke-width="1"/>',
    ]
    everything = [p for pts in points.values() for p in pts]
    if not everything:
        parts.append(
            f'<text class="no-data" x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" '
            'font-family="sans-serif" font-size="14" text-anchor="middle" fill="#666666">'
            "no data</text>"
        )
        return "\n".join([*parts, "</svg>"]) + "\n"
    x0 = min(x for x, _ in everything)
    x_span = max(x for x, _ in everything) - x0 or 1.0
    y_low = min(0.0, *(y for _, y in everything))
    y_high = max(0.0, *(y for _, y in everything), threshold or 0.0) * 1.1
    if y_high <= y_low:
        y_high = y_low + 1.0

    def px(x: float) -> float:
        return left + (x - x0) / x_span * plot_w

    def py(y: float) -> float:
        return bottom - (y - y_low) / (y_high - y_low) * plot_h

    parts += _axes(left, bottom, plot_w, x_span, y_low, y_high, unit, px, py, x0)
    for n, (name, pts) in enumerate(points.items()):
        colour = PALETTE[n % len(PALETTE)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        if len(pts) > 1:
            parts.append(
                f'<polyline class="series" data-series="{_text(name)}" points="{coords}" '
                f'fill="none" stroke="{colour}" stroke-width="1.5"/>'
            )
        elif pts:  # one point draws no line: a dot, so the series is not lost
            parts.append(
                f'<circle class="series" data-series="{_text(name)}" cx="{px(pts[0][0]):.1f}" '
                f'cy="{py(pts[0][1]):.1f}" r="2.5" fill="{colour}"/>'
            )
        legend_x = left + 110 * n
        parts.append(
            f'<line x1="{legend_x}" y1="29" x2="{legend_x + 16}" y2="29" stroke="{colour}" '
            f'stroke-width="2"/><text x="{legend_x + 20}" y="33" {FONT}>{_text(name)}</text>'
        )
    if threshold is not None:
        y = py(threshold)
        parts.append(
            f'<line class="threshold" x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" '
            f'y2="{y:.1f}" stroke="{THRESHOLD_COLOUR}" stroke-width="1" '
            'stroke-dasharray="5,4"/>'
            f'<text x="{left + plot_w - 4}" y="{y - 4:.1f}" {FONT} text-anchor="end" '
            f'fill="{THRESHOLD_COLOUR}">threshold {_text(_number(threshold))} {_text(unit)}</text>'
        )
    return "\n".join([*parts, "</svg>"]) + "\n"


def _axes(
    left: float,
    bottom: float,
    plot_w: float,
    x_span: float,
    y_low: float,
    y_high: float,
    unit: str,
    px: Callable[[float], float],
    py: Callable[[float], float],
    x0: float,
) -> list[str]:
    """Grid and tick labels: y in the series' unit, x in seconds from the first point."""
    parts = []
    step = nice_step(y_high - y_low)
    tick = math.ceil(y_low / step) * step
    while tick <= y_high + 1e-12:
        y = py(tick)
        parts.append(
            f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
            'stroke="#e5e5e5" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" {FONT} text-anchor="end">'
            f"{_text(_number(tick))}</text>"
        )
        tick += step
    step = nice_step(x_span)
    tick = 0.0
    while tick <= x_span + 1e-9:
        x = px(x0 + tick)
        parts.append(
            f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#999999"/>'
            f'<text x="{x:.1f}" y="{bottom + 16}" {FONT} text-anchor="middle">'
            f"{_text(_number(tick))}</text>"
        )
        tick += step
    parts.append(
        f'<text x="{left + plot_w}" y="{bottom + 30}" {FONT} text-anchor="end">'
        "seconds from the first sample</text>"
        f'<text x="8" y="{MARGIN_TOP - 4}" {FONT}>{_text(unit)}</text>'
    )
    return parts
