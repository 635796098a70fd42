"""Charts as SVG text: a line chart over labelled x positions (`line_chart`, the grid page's),
and lines on log-log axes (`log_log_chart`, the results pages' log-scale ROC, a standalone file).

Written by hand rather than with matplotlib so that the page needs nothing beyond the project
and the same numbers always give the same bytes (coordinates rounded to 0.1 px, no ids, no
dates). Missing points (None) break a line.
"""

from __future__ import annotations

import html
import math

WIDTH, HEIGHT = 420, 250
LEFT, RIGHT, TOP, BOTTOM = 58, 120, 28, 34  # margins: y labels, legend, title, x labels
# a colour-blind-safe palette (Okabe and Ito), in series order
COLOURS = ("#000000", "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#f0e442")


def line_chart(title: str, x_labels: list[str], series: dict[str, tuple[float | None, ...]]) -> str:
    """An `<svg>` element: `series` name -> one value per x label, drawn in the given order."""
    points = [v for values in series.values() for v in values if v is not None and math.isfinite(v)]
    low, high = (min(points), max(points)) if points else (0.0, 1.0)
    if high - low < 1e-12:
        low, high = low - 0.5 * (abs(low) or 1.0), high + 0.5 * (abs(high) or 1.0)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (len(x_labels) - 1) if len(x_labels) > 1 else plot_w / 2)

    def y(value: float) -> float:
        return TOP + plot_h * (high - value) / (high - low)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'role="img" aria-label="{html.escape(title)}">',
             f'<text x="{LEFT}" y="16" class="chart-title">{html.escape(title)}</text>',
             f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#bbb"/>']
    for tick in range(5):
        value = low + (high - low) * tick / 4
        parts.append(f'<line x1="{LEFT - 4}" x2="{LEFT + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#eee"/>'
                     f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{_tick(value, high - low)}</text>')
    for i, label in enumerate(x_labels):
        parts.append(f'<text x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{html.escape(label)}</text>')
    for n, (name, values) in enumerate(series.items()):
        colour = COLOURS[n % len(COLOURS)]
        for run in _runs(values):
            coords = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in run)
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')
            parts += [f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>' for i, v in run]
        legend_y = TOP + 14 * n + 8
        parts.append(f'<line x1="{WIDTH - RIGHT + 10}" x2="{WIDTH - RIGHT + 26}" y1="{legend_y}" y2="{legend_y}" '
                     f'stroke="{colour}" stroke-width="2"/>'
                     f'<text x="{WIDTH - RIGHT + 30}" y="{legend_y + 4}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _runs(values: tuple[float | None, ...]) -> list[list[tuple[int, float]]]:
    """The stretches of consecutive finite values, with their positions."""
    runs, current = [], []
    for i, value in enumerate(values):
        if value is None or not math.isfinite(value):
            runs, current = runs + [current] if current else runs, []
        else:
            current.append((i, value))
    return runs + [current] if current else runs


def _tick(value: float, span: float) -> str:
    """A tick label with as many decimals as the axis' span calls for."""
    decimals = max(0, min(6, 1 - math.floor(math.log10(span)))) if span > 0 else 2
    text = f"{value:.{decimals}f}"
    return "0" if float(text) == 0 else text


def log_log_chart(title: str, series: dict[str, tuple[list[float], list[float]]], x_label: str, y_label: str,
                  diagonal: bool = True) -> str:
    """An `<svg>` element: `series` name -> (xs, ys) drawn as a line on log-scaled axes, both
    from the decade below the smallest positive value to 1 (values at or below that floor,
    zeros included, are drawn on it); `diagonal` adds the dashed line y = x (a ROC's chance).
    Series past the palette's length repeat its colours dashed."""
    positive = [v for xs, ys in series.values() for v in (*xs, *ys) if v > 0 and math.isfinite(v)]
    floor = 10.0 ** math.floor(math.log10(min(positive))) if positive else 1e-3
    floor = min(floor, 0.1)
    decades = round(-math.log10(floor))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(value: float) -> float:
        return LEFT + plot_w * (math.log10(max(value, floor)) + decades) / decades

    def y(value: float) -> float:
        return TOP + plot_h * (-math.log10(max(value, floor))) / decades

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT + 14}" viewBox="0 0 {WIDTH} {HEIGHT + 14}" '
             f'role="img" aria-label="{html.escape(title)}" font-family="sans-serif" font-size="11">',
             '<rect x="0" y="0" width="100%" height="100%" fill="#fff"/>',
             f'<text x="{LEFT}" y="16" class="chart-title" font-weight="600">{html.escape(title)}</text>',
             f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#bbb"/>']
    for k in range(decades + 1):
        value = 10.0 ** -k
        label = "1" if k == 0 else f"1e-{k}"
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#eee"/>'
                     f'<line x1="{x(value):.1f}" x2="{x(value):.1f}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#eee"/>'
                     f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{label}</text>'
                     f'<text x="{x(value):.1f}" y="{TOP + plot_h + 14}" text-anchor="middle">{label}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT + 8}" text-anchor="middle">{html.escape(x_label)}</text>'
                 f'<text x="12" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {TOP + plot_h / 2:.1f})">{html.escape(y_label)}</text>')
    if diagonal:
        parts.append(f'<line x1="{x(floor):.1f}" y1="{y(floor):.1f}" x2="{x(1):.1f}" y2="{y(1):.1f}" stroke="#999" '
                     'stroke-dasharray="2 3"/>')
    for n, (name, (xs, ys)) in enumerate(series.items()):
        colour = COLOURS[n % len(COLOURS)]
        dash = ' stroke-dasharray="5 3"' if n >= len(COLOURS) else ""
        coords = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(xs, ys) if math.isfinite(a) and math.isfinite(b))
        legend_y = TOP + 14 * n + 8
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5"{dash}/>'
                     f'<line x1="{WIDTH - RIGHT + 10}" x2="{WIDTH - RIGHT + 26}" y1="{legend_y}" y2="{legend_y}" '
                     f'stroke="{colour}" stroke-width="2"{dash}/>'
                     f'<text x="{WIDTH - RIGHT + 30}" y="{legend_y + 4}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
