"""Small charts drawn on the server as SVG, so the console needs no chart library and no CDN.

A chart is two SVG boxes side by side: the value axis at a fixed width, and the plot, which takes the
rest of the line. The plot has no viewBox of its own, so its labels keep their size in pixels at any
width (a phone scales nothing down); only the bars sit in an inner SVG that stretches to the plot.
"""
from __future__ import annotations

from datetime import datetime, timezone
from html import escape

from flask_babel import gettext as _

COLOURS = {"sent": "#07c160", "queued": "#f0ad4e", "failed": "#dc3545"}
FONT_SIZE = 12  # px, as rendered: the labels are never scaled
MOST_INTERVALS = 5


def nice_ticks(largest: float, most: int = MOST_INTERVALS) -> list[int]:
    """Whole-number ticks for an axis of counts: 0 up to at least ``largest``, in steps of 1, 2 or 5 times a
    power of ten, with at most ``most`` intervals (an empty chart gets the axis 0, 1)."""
    top = max(1, int(-(-largest // 1)))  # counts are whole: 2.3 needs an axis up to 3
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            intervals = -(-top // step)
            if intervals <= most:
                return list(range(0, intervals * step + 1, step))
        magnitude *= 10


def stacked_bars(buckets: list[dict], labels: list[str], series: tuple[str, ...] = ("sent", "queued", "failed"),
                 title: str = "", height: int = 160, label_every: int = 4,
                 starts: list[datetime] | None = None) -> str:
    """Stacked bars, one per bucket (e.g. an hour), of the given series; returns the chart's markup.

    ``starts`` (the moment each bucket begins, in UTC) lets the page script relabel the buckets in
    the viewer's own time zone; ``labels`` are shown until then.
    """
    ticks = nice_ticks(max([sum(b.get(s, 0) for s in series) for b in buckets] + [0]))
    top = ticks[-1]
    pad_top, pad_bottom = FONT_SIZE // 2 + 2, FONT_SIZE + 8
    plot = height - pad_top - pad_bottom

    def y_of(value: float) -> float:
        return pad_top + plot - value / top * plot

    axis_width = 10 + int(FONT_SIZE * 0.62 * len(str(top)))
    axis = [f'<svg class="chart-axis" width="{axis_width}" height="{height}" aria-hidden="true">']
    grid = []
    for tick in ticks:
        y = y_of(tick)
        axis.append(f'<text x="{axis_width - 6}" y="{y + FONT_SIZE * 0.35:.1f}" text-anchor="end" '
                    f'font-size="{FONT_SIZE}" fill="#6c757d">{tick}</text>')
        grid.append(f'<line x1="0" x2="100%" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6e8"/>')
    axis.append("</svg>")

    # The bars live in their own coordinates (10 units a bucket), stretched to the plot's width.
    count = max(len(buckets), 1)
    names = {"sent": _("sent"), "queued": _("queued"), "failed": _("failed")}  # the legend's words
    bars = [f'<svg x="0" y="{pad_top}" width="100%" height="{plot}" viewBox="0 0 {count * 10} {plot}" '
            f'preserveAspectRatio="none">']
    for i, bucket in enumerate(buckets):
        below = 0  # the counts already stacked: each rect is placed from them, so no rounding adds up
        tip = ", ".join(f"{names.get(s, s)} {bucket.get(s, 0)}" for s in series)
        for name in series:
            value = bucket.get(name, 0)
            if not value:
                continue
            y = plot - (below + value) / top * plot
            h = value / top * plot
            below += value
            bars.append(f'<rect x="{i * 10 + 1}" y="{y:.2f}" width="8" height="{h:.2f}" '
                        f'fill="{COLOURS.get(name, "#6c757d")}"><title>{escape(labels[i])}: {escape(tip)}</title></rect>')
    bars.append("</svg>")

    # Bucket labels start where their bucket starts, so the first one never runs off the left edge.
    marks = []
    for i in range(0, len(buckets), label_every):
        x = 100 * i / count
        when = ""
        if starts:
            moment = starts[i].astimezone(timezone.utc) if starts[i].tzinfo else starts[i].replace(tzinfo=timezone.utc)
            when = f' data-time="{moment.strftime("%Y-%m-%dT%H:%M:%SZ")}"'
        marks.append(f'<line x1="{x:.3f}%" x2="{x:.3f}%" y1="{pad_top + plot}" y2="{pad_top + plot + 4}" stroke="#adb5bd"/>'
                     f'<text x="{x:.3f}%" y="{height - 4}" font-size="{FONT_SIZE}" fill="#6c757d"{when}>'
                     f'{escape(labels[i])}</text>')
    plot_svg = (f'<svg class="chart-plot" width="100%" height="{height}" aria-hidden="true">'
                + "".join(grid) + "".join(bars) + "".join(marks) + "</svg>")
    return (f'<div class="chart" role="img" aria-label="{escape(title)}">'
            + "".join(axis) + plot_svg + "</div>")
