"""The hand-written SVG charts: well-formed, and points where the axes put them."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from erase_jax.grid import svg

NS = "{http://www.w3.org/2000/svg}"


def test_log_log_chart_places_points_on_decades():
    chart = svg.log_log_chart("ROC", {"a": ([0.01, 0.1, 1.0], [0.0, 0.1, 1.0]), "b": ([0.5], [0.5])}, "FPR", "TPR")
    root = ET.fromstring(chart)
    lines = root.findall(f"{NS}polyline")
    assert len(lines) == 2
    plot_w, plot_h = svg.WIDTH - svg.LEFT - svg.RIGHT, svg.HEIGHT - svg.TOP - svg.BOTTOM
    # smallest positive value 0.01: two decades; a zero is drawn on the floor
    points = [tuple(map(float, p.split(","))) for p in lines[0].get("points").split()]
    expected = [(svg.LEFT, svg.TOP + plot_h), (svg.LEFT + plot_w / 2, svg.TOP + plot_h / 2), (svg.LEFT + plot_w, svg.TOP)]
    for (px, py), (ex, ey) in zip(points, expected):
        assert abs(px - ex) <= 0.05 and abs(py - ey) <= 0.05
    labels = [t.text for t in root.iter(f"{NS}text")]
    assert {"1", "1e-1", "1e-2", "FPR", "TPR", "a", "b"} <= set(labels)
    assert svg.log_log_chart("ROC", {"a": ([0.01, 1.0], [0.01, 1.0])}, "FPR", "TPR") == \
        svg.log_log_chart("ROC", {"a": ([0.01, 1.0], [0.01, 1.0])}, "FPR", "TPR")  # the same bytes
