"""Charts as inline SVG, drawn on the server: no chart library, no CDN, readable without JavaScript.

Amounts arrive as text (Decimal); they become floats here only to place pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from html import escape
from typing import Any

from markupsafe import Markup

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 720, 240, 70, 40, 12
COLOURS = ("#2563eb", "#16a34a", "#dc2626", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d")


def _number(value: Any) -> float:
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return 0.0


def chart(report: Mapping[str, Any]) -> list[tuple[str, Markup]]:
    """The report's charts as ``(caption, svg)``, following its ``chart`` hint: one chart per value of
    ``group`` (currencies never share an axis), rows from ``data`` (``rows`` or ``totals.KEY``)."""
    hint = report.get("chart") or {}
    x, series = hint.get("x"), list(hint.get("series") or [])
    source = str(hint.get("data") or "rows")
    rows: Any = report.get("rows") or []
    if source.startswith("totals."):
        rows = (report.get("totals") or {}).get(source.removeprefix("totals.")) or []
    if not x or not series or not rows:
        return []
    group = hint.get("group")
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row.get(group) or "") if group else "", []).append(row)
    kind = hint.get("type", "bar")
    out = []
    for caption, members in sorted(groups.items()):
        labels = [str(r.get(x)) for r in members]
        values = {s: [_number(r.get(s)) for r in members] for s in series}
        out.append((caption, _heatmap(labels, values) if kind == "heatmap" else _svg(kind, labels, values)))
    return out


def _heatmap(labels: list[str], series: dict[str, list[float]]) -> Markup:
    """Rows = labels (cohorts), columns = series (months since), shade = value in percent."""
    cell_w, cell_h, left, top = 56, 22, 80, 20
    width, height = left + cell_w * len(series) + 10, top + cell_h * len(labels) + 10
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" class="chart" xmlns="http://www.w3.org/2000/svg">'
    ]
    for j, name in enumerate(series):
        parts.append(
            f'<text x="{left + cell_w * (j + 0.5):.1f}" y="14" text-anchor="middle" font-size="11">{escape(name)}</text>'
        )
    for i, label in enumerate(labels):
        y = top + cell_h * i
        parts.append(
            f'<text x="{left - 6}" y="{y + 15}" text-anchor="end" font-size="11">{escape(label)}</text>'
        )
        for j, values in enumerate(series.values()):
            v = values[i]
            shade = max(0.0, min(v, 100.0)) / 100
            parts.append(
                f'<rect x="{left + cell_w * j}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" '
                f'fill="#2563eb" fill-opacity="{0.08 + 0.85 * shade:.2f}"><title>{escape(label)}: {v:.1f} %</title></rect>'
                f'<text x="{left + cell_w * (j + 0.5):.1f}" y="{y + 15}" text-anchor="middle" font-size="11">{v:.0f}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def _svg(kind: str, labels: list[str], series: dict[str, list[float]]) -> Markup:
    values = [v for vs in series.values() for v in vs]
    top, bottom = max([0.0, *values]), min([0.0, *values])
    span = (top - bottom) or 1.0
    plot_w, plot_h = WIDTH - PAD_LEFT - 10, HEIGHT - PAD_BOTTOM - PAD_TOP

    def y(v: float) -> float:
        return PAD_TOP + (top - v) / span * plot_h

    n = max(len(labels), 1)
    step = plot_w / n
    parts = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT + 20 * ((len(series) + 3) // 4)}" role="img" class="chart" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{PAD_LEFT}" y1="{y(0):.1f}" x2="{WIDTH - 10}" y2="{y(0):.1f}" stroke="#999"/>',
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + 4}" text-anchor="end" font-size="11">{top:,.0f}</text>',
        f'<text x="{PAD_LEFT - 6}" y="{y(bottom):.1f}" text-anchor="end" font-size="11">{bottom:,.0f}</text>',
    ]
    every = max(1, n // 12)
    for i, label in enumerate(labels):
        if i % every == 0:
            cx = PAD_LEFT + step * (i + 0.5)
            parts.append(
                f'<text x="{cx:.1f}" y="{HEIGHT - PAD_BOTTOM + 16}" text-anchor="middle" font-size="11">{escape(label[:12])}</text>'
            )
    width = step * 0.8 / max(len(series), 1)
    for k, (name, vs) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        if kind == "line":
            points = " ".join(f"{PAD_LEFT + step * (i + 0.5):.1f},{y(v):.1f}" for i, v in enumerate(vs))
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        else:
            for i, v in enumerate(vs):
                x0 = PAD_LEFT + step * i + step * 0.1 + width * k
                y0, y1 = sorted((y(v), y(0)))
                parts.append(
                    f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{width:.1f}" height="{max(y1 - y0, 0.5):.1f}" fill="{colour}">'
                    f"<title>{escape(name)} {escape(labels[i])}: {v:,.2f}</title></rect>"
                )
        lx, ly = PAD_LEFT + (k % 4) * 160, HEIGHT + 4 + 20 * (k // 4)
        parts.append(f'<rect x="{lx}" y="{ly}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 14}" y="{ly + 9}" font-size="11">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
