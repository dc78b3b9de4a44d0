"""The delivery chart's value axis: a few whole-number ticks from 0 to at least the tallest bar.

The chart is read back from the markup the console serves (webapp/console/charts.py), so a label
split into pieces, a fractional tick or an axis that stops below the tallest bar all fail here.
"""
import re
from datetime import datetime, timedelta, timezone

import pytest

from tests.api_support import mp, service, sim  # noqa: F401  (fixtures)
from tests.test_console import BODY, admin_session
from webapp.console.charts import MOST_INTERVALS, stacked_bars

MAXIMA = (0, 1, 2, 3, 5, 7, 10, 37, 100, 1234)


def axis_ticks(markup: str) -> list[tuple[str, float]]:
    """The value axis's labels as written (text, y in pixels), bottom first."""
    axis = re.search(r'<svg class="chart-axis"[^>]*>(.*?)</svg>', markup, re.S)
    assert axis, "the chart has no value axis"
    labels = [(text, float(y)) for y, text in re.findall(r'<text[^>]* y="([\d.]+)"[^>]*>([^<]*)</text>', axis.group(1))]
    return sorted(labels, key=lambda label: -label[1])


def plot_height(markup: str) -> float:
    """The height of the bars' area (the inner SVG the bars are drawn in)."""
    return float(re.search(r'<svg x="0" y="[\d.]+" width="100%" height="([\d.]+)"', markup).group(1))


def bars_by_bucket(markup: str, count: int) -> list[float]:
    """The stacked height of each bucket's bar, in the bars' own units (10 units a bucket)."""
    heights = [0.0] * count
    for x, height in re.findall(r'<rect x="(\d+)" y="[\d.]+" width="8" height="([\d.]+)"', markup):
        heights[int(x) // 10] += float(height)
    return heights


def day_of(largest: int) -> tuple[list[dict], list[str], list[datetime]]:
    """24 hourly buckets as webapp.console.health.hourly_deliveries makes them, the busiest holding ``largest``
    deliveries split over the three series, the others fewer."""
    start = datetime(2026, 5, 3, 6, tzinfo=timezone.utc)
    buckets = [{"sent": 0, "queued": 0, "failed": 0} for _ in range(24)]
    failed, queued = largest // 5, largest // 7
    buckets[17] = {"sent": largest - failed - queued, "queued": queued, "failed": failed}
    buckets[3] = {"sent": largest // 2, "queued": 0, "failed": 0}
    starts = [start + timedelta(hours=i) for i in range(24)]
    return buckets, [f"{hour:%H}:00" for hour in starts], starts


@pytest.mark.parametrize("largest", MAXIMA)
def test_axis_ticks_are_few_whole_numbers_from_zero_past_the_tallest_bar(app, largest):
    buckets, labels, starts = day_of(largest)
    with app.test_request_context():
        markup = stacked_bars(buckets, labels, title="Deliveries per hour", starts=starts)
    ticks = axis_ticks(markup)
    texts = [text for text, _ in ticks]
    assert all(re.fullmatch(r"\d+", text) for text in texts), texts  # one whole number per label
    values = [int(text) for text in texts]
    assert values[0] == 0
    assert all(a < b for a, b in zip(values, values[1:])), values
    assert values[-1] >= largest
    assert 2 <= len(values) <= MOST_INTERVALS + 1, values
    # Evenly spaced, in value and on the page, so the grid reads as a scale.
    steps = {b - a for a, b in zip(values, values[1:])}
    assert len(steps) == 1, values
    step = steps.pop()
    assert str(step).lstrip("0")[0] in "125" and set(str(step)[1:]) <= {"0"}, step  # 1, 2 or 5 times a power of ten
    gaps = [round(a[1] - b[1], 1) for a, b in zip(ticks, ticks[1:])]
    assert max(gaps) - min(gaps) <= 0.2, gaps
    assert values[-1] - step < max(largest, 1)  # no empty interval above the tallest bar
    # The bars are drawn to the same scale: the busiest hour reaches largest/top of the plot.
    heights = bars_by_bucket(markup, len(buckets))
    assert max(heights) == pytest.approx(plot_height(markup) * largest / values[-1], abs=0.05)


def test_the_overview_chart_counts_the_real_sends_of_this_hour(mp):
    app, base, api = mp
    admin = admin_session(app, base)
    api.send(BODY)
    sim(base, "faults", {"endpoint": "template_send", "kind": "errcode", "errcode": 40037, "count": 2})
    api.send(BODY)
    api.send(BODY)
    page = admin.get(base + "/console/", timeout=10).text
    assert "1 sent" in page and "2 failed" in page
    chart = re.search(r'<div class="chart".*?</svg></div>', page, re.S).group(0)
    assert [text for text, _ in axis_ticks(chart)] == ["0", "1", "2", "3"]
    # This hour's bar (the last) is the full height of the plot: 3 deliveries on an axis up to 3.
    heights = bars_by_bucket(chart, 24)
    assert heights[-1] == pytest.approx(plot_height(chart), abs=0.05) and sum(heights[:-1]) == 0
