"""The evidence's SVG line chart: well-formed, self-contained, the threshold where it belongs."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from pytest_spark.evidence.chart import PALETTE, line_chart, nice_step

SVG = "{http://www.w3.org/2000/svg}"
T0 = 1_764_450_000.0  # Unix seconds: the x axis counts from the first point


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def plot_area(root: ET.Element) -> tuple[float, float]:
    """(top, bottom) of the plot in pixels."""
    [rect] = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "plot"]
    top = float(rect.attrib["y"])
    return top, top + float(rect.attrib["height"])


def texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def p95_chart(threshold: float | None = 200.0) -> str:
    return line_chart(
        "API p95",
        "ms",
        {
            "canary": [(T0 + i, 100.0 + i) for i in range(15)],
            "stable": [(T0 + i, 90.0) for i in range(15)],
        },
        threshold,
    )


def test_one_polyline_per_series_in_distinct_colours_with_a_legend() -> None:
    root = parse(p95_chart())
    assert root.tag == f"{SVG}svg"
    lines = [p for p in root.iter(f"{SVG}polyline") if p.get("class") == "series"]
    assert [p.get("data-series") for p in lines] == ["canary", "stable"]
    assert [p.get("stroke") for p in lines] == list(PALETTE[:2])
    assert len(lines[0].attrib["points"].split()) == 15
    assert {"canary", "stable"} <= set(texts(root))


def test_the_threshold_is_a_dashed_line_at_its_value() -> None:
    root = parse(p95_chart(threshold=200.0))
    [line] = [x for x in root.iter(f"{SVG}line") if x.get("class") == "threshold"]
    assert line.get("stroke-dasharray")
    top, bottom = plot_area(root)
    # y runs from 0 to 1.1 × max(values, threshold) = 220: 200 sits at 200/220 of the height.
    expected = bottom - 200.0 / 220.0 * (bottom - top)
    assert float(line.attrib["y1"]) == pytest.approx(expected, abs=0.1)
    assert line.attrib["y1"] == line.attrib["y2"]
    assert "threshold 200 ms" in texts(root)


def test_values_above_the_threshold_set_the_scale() -> None:
    root = parse(line_chart("5xx", "ratio", {"canary": [(0, 0.0), (10, 0.05)]}, 0.01))
    [line] = [x for x in root.iter(f"{SVG}line") if x.get("class") == "threshold"]
    top, bottom = plot_area(root)
    expected = bottom - 0.01 / 0.055 * (bottom - top)
    assert float(line.attrib["y1"]) == pytest.approx(expected, abs=0.1)
    [series] = root.iter(f"{SVG}polyline")
    highest = min(float(p.split(",")[1]) for p in series.attrib["points"].split())
    assert highest > top  # the largest value stays inside the plot


def test_no_threshold_draws_no_threshold_line() -> None:
    root = parse(p95_chart(threshold=None))
    assert [x for x in root.iter(f"{SVG}line") if x.get("class") == "threshold"] == []


def test_x_axis_counts_seconds_from_the_first_point() -> None:
    labels = texts(parse(p95_chart()))
    assert "0" in labels and "10" in labels
    assert not any(str(int(T0)) in label for label in labels)


def test_every_series_empty_says_no_data() -> None:
    root = parse(line_chart("API p95", "ms", {"canary": [], "stable": []}, 200.0))
    assert "no data" in texts(root)
    assert list(root.iter(f"{SVG}polyline")) == []


def test_nan_and_infinite_points_are_skipped() -> None:
    points = [(T0, 1.0), (T0 + 1, math.nan), (T0 + 2, math.inf), (math.nan, 2.0), (T0 + 3, 3.0)]
    root = parse(line_chart("p95", "ms", {"canary": points}, math.nan))
    [line] = root.iter(f"{SVG}polyline")
    assert len(line.attrib["points"].split()) == 2
    assert "nan" not in ET.tostring(root, encoding="unicode").lower()
    only_bad = line_chart("p95", "ms", {"canary": [(T0, math.nan), (T0 + 1, -math.inf)]}, 1.0)
    assert "no data" in texts(parse(only_bad))


def test_a_single_point_is_drawn_as_a_dot() -> None:
    root = parse(line_chart("p95", "ms", {"canary": [(T0, 5.0)]}, None))
    assert [c.get("data-series") for c in root.iter(f"{SVG}circle")] == ["canary"]


def test_text_is_escaped_for_xml() -> None:
    title = 'p95 <canary> & "stable"\x00'
    svg = line_chart(title, "<ms>", {"a&b": [(T0, 1.0), (T0 + 1, 2.0)]}, 1.5)
    root = parse(svg)  # well-formed despite the markup and the NUL
    assert 'p95 <canary> & "stable"' in texts(root)
    assert root.get("aria-label") == 'p95 <canary> & "stable"'
    assert "a&b" in texts(root)
    assert "threshold 1.5 <ms>" in texts(root)
    assert "<canary>" not in svg


def test_self_contained_no_script_no_external_reference() -> None:
    svg = p95_chart()
    assert "<script" not in svg
    assert "href" not in svg
    assert "url(" not in svg
    root = parse(svg)
    assert root.get("width") == "640" and root.get("height") == "240"


@pytest.mark.parametrize(
    ("span", "step"), [(220.0, 100.0), (0.055, 0.02), (15.0, 5.0), (1.0, 0.5), (0.0, 1.0)]
)
def test_axis_steps_are_round(span: float, step: float) -> None:
    assert nice_step(span) == pytest.approx(step)
