"""Small charts drawn on the server as SVG, so the console needs no chart library and no CDN."""
from __future__ import annotations

from html import escape

from flask_babel import gettext as _

COLOURS = {"sent": "#07c160", "queued": "#f0ad4e", "failed": "#dc3545"}


def stacked_bars(buckets: list[dict], labels: list[str], series: tuple[str, ...] = ("sent", "queued", "failed"),
                 width: int = 720, height: int = 160, title: str = "") -> str:
    """Stacked bars, one per bucket (e.g. an hour), of the given series; returns SVG markup."""
    top = max([sum(b.get(s, 0) for s in series) for b in buckets] + [1])
    gap, left, bottom = 2, 34, 18
    bar = (width - left) / max(len(buckets), 1) - gap
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" class="chart" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>']
    plot = height - bottom
    # The bars' tooltips name the series with the same words as the legend under the chart.
    names = {"sent": _("sent"), "queued": _("queued"), "failed": _("failed")}
    for fraction in (0.0, 0.5, 1.0):
        y = plot - fraction * (plot - 6)
        parts.append(f'<line x1="{left}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6e8"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10" fill="#6c757d">{round(top * fraction)}</text>')
    for i, bucket in enumerate(buckets):
        x = left + i * (bar + gap)
        y = plot
        tip = ", ".join(f"{names.get(s, s)} {bucket.get(s, 0)}" for s in series)
        for name in series:
            value = bucket.get(name, 0)
            if not value:
                continue
            h = value / top * (plot - 6)
            y -= h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{COLOURS.get(name, "#6c757d")}">'
                         f'<title>{escape(labels[i])}: {escape(tip)}</title></rect>')
        if i % 4 == 0:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{height - 4}" text-anchor="middle" font-size="10" fill="#6c757d">{escape(labels[i])}</text>')
    parts.append("</svg>")
    return "".join(parts)
