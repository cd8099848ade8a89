"""The report's plots as inline SVG: scales, ticks, pixel positions, boxes, skipped values, and no matplotlib."""

from __future__ import annotations

import math
import re
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from refconv.report import plots, svg
from refconv.report.html import figure

NS = "{http://www.w3.org/2000/svg}"
PLOTS = (plots.ratio_distribution, plots.ratio_vs_k, plots.time_vs_flops, plots.gflops_per_adapter)


def _rows(n: int = 40, adapters: tuple[str, ...] = ("numpy", "torch"), seed: int = 0) -> pd.DataFrame:
    """n rows per adapter with the columns the plots read: ratios, K, tolerance, FLOPs and times."""
    rng = np.random.default_rng(seed)
    parts = []
    for adapter in adapters:
        flops = 10.0 ** rng.uniform(1, 7, n)
        median = 1e-6 * flops / 10.0 ** rng.uniform(-2, 1, n)
        parts.append(pd.DataFrame({
            "adapter": adapter, "dtype": "float32", "K": rng.integers(1, 800, n).astype(float),
            "bound_ratio": 10.0 ** rng.uniform(-1, 0.5, n), "tolerance_c": 16.0, "flops": flops,
            "time_median_ms": median, "time_min_ms": median * rng.uniform(0.5, 1.0, n)}))
    return pd.concat(parts, ignore_index=True)


def _series(root: ET.Element, title: str) -> ET.Element:
    """The <g> of the series whose <title> is `title`."""
    found = [g for g in root.iter(f"{NS}g") if g.findtext(f"{NS}title") == title]
    assert len(found) == 1, f"{len(found)} series titled {title!r}"
    return found[0]


def _centres(group: ET.Element) -> list[tuple[float, float]]:
    """(x, y) of each marker in a series: the 'M x y' its path starts with."""
    out = []
    for path in group.iter(f"{NS}path"):
        m = re.match(r"M(-?[\d.]+) (-?[\d.]+)", path.get("d", ""))
        assert m, path.get("d")
        out.append((float(m.group(1)), float(m.group(2))))
    return out


def _tick_x(root: ET.Element, label: str) -> float:
    """x of the x-axis tick label that reads `label` (10^-3 reads '10−3')."""
    xs = [float(t.get("x", "nan")) for t in root.iter(f"{NS}text") if "".join(t.itertext()) == label]
    assert xs, f"no tick label {label!r}"
    return xs[0]


# --- scales ----------------------------------------------------------------------------------------


def test_log_scale_ticks_sit_at_decades_labelled_as_powers_of_ten():
    scale = svg.log_scale([1e-3, 0.5, 12.0])
    assert scale is not None and scale.log
    ticks = scale.ticks()
    assert [t.value for t in ticks] == [1e-3, 1e-2, 1e-1, 1.0, 10.0]
    assert [(t.text, t.sup) for t in ticks][:2] == [("10", "−3"), ("10", "−2")]
    assert ticks[-1].sup == "1"
    assert scale.lo < 1e-3 and scale.hi > 12.0  # a margin each side: no point sits on the frame
    assert all(scale.lo <= m <= scale.hi for m in scale.minor()) and 2e-3 in scale.minor()


def test_log_scale_of_many_decades_labels_at_most_nine():
    ticks = svg.log_scale([1e-3, 1e12]).ticks()
    assert 2 <= len(ticks) <= 9
    assert all(math.log10(t.value) % 2 == 0 for t in ticks)  # every second decade


def test_a_single_value_still_gets_a_range_with_ticks():
    log = svg.log_scale([5.0, 5.0])
    assert log.lo < 5.0 < log.hi and len(log.ticks()) >= 2
    linear = svg.linear_scale([3.0])
    assert linear.lo < 3.0 < linear.hi and len(linear.ticks()) >= 2
    zero = svg.linear_scale([0.0, 0.0])
    assert zero.lo < 0.0 < zero.hi


def test_linear_ticks_are_round_steps():
    ticks = svg.linear_scale([0.0, 10.0], margin=0).ticks()
    assert [t.value for t in ticks] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert [t.text for t in ticks] == ["0", "2", "4", "6", "8", "10"]


def test_nothing_drawable_gives_no_scale():
    assert svg.log_scale([0.0, -1.0, np.nan, np.inf]) is None
    assert svg.linear_scale([np.nan, -np.inf]) is None
    assert svg.log_scale() is None


def test_undrawable_values_have_no_position():
    f = svg.Scale(1.0, 100.0, log=True).fraction([10.0, 0.0, -3.0, np.nan, np.inf])
    assert f[0] == pytest.approx(0.5)
    assert np.isnan(f[1:]).all()


def test_category_scale_names_each_position():
    scale = svg.category_scale(["numpy", "torch"])
    assert [(t.value, t.text) for t in scale.ticks()] == [(0.0, "numpy"), (1.0, "torch")]
    assert scale.fraction([0, 1]).tolist() == [0.25, 0.75]


# --- primitives ------------------------------------------------------------------------------------


def test_a_point_lands_at_its_pixel():
    chart = svg.Chart(svg.Scale(1.0, 100.0, log=True), svg.Scale(0.0, 10.0), height=300, xlabel="x", ylabel="y")
    chart.points([10.0, 1.0], [2.5, 10.0], svg.PALETTE[0], title="s")
    area = chart.area()
    root = ET.fromstring(chart.svg())
    (x1, y1), (x2, y2) = _centres(_series(root, "s"))
    # 10 is half-way along 1..100 on a log axis; 2.5 is a quarter up from the bottom (y grows downwards)
    assert x1 == pytest.approx((area.left + area.right) / 2, abs=0.051)
    assert y1 == pytest.approx(area.bottom - (area.bottom - area.top) / 4, abs=0.051)
    assert (x2, y2) == (pytest.approx(area.left, abs=0.051), pytest.approx(area.top, abs=0.051))


def test_coordinates_are_rounded_to_a_tenth():
    chart = svg.Chart(svg.Scale(0.0, 3.0), svg.Scale(0.0, 7.0), height=211)
    chart.points(np.linspace(0, 3, 17), np.linspace(0, 7, 17), svg.PALETTE[1], marker="^", title="s")
    for x, y in _centres(_series(ET.fromstring(chart.svg()), "s")):
        assert round(x, 1) == x and round(y, 1) == y


def test_nan_inf_and_nonpositive_values_are_skipped_not_drawn():
    chart = svg.Chart(svg.Scale(1.0, 100.0, log=True), svg.Scale(1.0, 100.0, log=True), height=200)
    chart.points([2.0, np.nan, np.inf, 0.0, -5.0, 50.0], [3.0, 3.0, 3.0, 3.0, 3.0, np.nan], svg.PALETTE[0], title="s")
    chart.bars([2.0, np.nan, 4.0], [1.5, 1.5, 0.0], [3.0, 3.0, 3.0], svg.PALETTE[0], title="b")
    root = ET.fromstring(chart.svg())
    assert len(_centres(_series(root, "s"))) == 1
    assert _series(root, "b").find(f"{NS}path").get("d").count("M") == 1


def test_box_stats_follow_the_quartile_and_1_5_iqr_rule():
    stats = svg.box_stats([1, 2, 3, 4, 5, 6, 7, 8, 9, 100, np.nan])
    # positions 2.25, 4.5, 6.75 of the sorted ten: 3.25, 5.5, 7.75; IQR 4.5, so whiskers reach 1 and 9
    assert (stats.q1, stats.median, stats.q3) == (3.25, 5.5, 7.75)
    assert (stats.low, stats.high) == (1.0, 9.0)
    assert stats.fliers.tolist() == [100.0]
    assert svg.box_stats([np.nan]) is None


def test_box_draws_box_median_and_whiskers_and_caps_its_fliers():
    stats = svg.box_stats(np.r_[np.linspace(1, 2, 80), np.linspace(50, 60, 20)])  # the 20 lie past Q3 + 1.5 IQR
    chart = svg.Chart(svg.Scale(0.5, 100.0, log=True), svg.category_scale(["a"]), height=150)
    chart.box(stats, 0, title="a box", fliers=10)
    root = ET.fromstring(chart.svg())
    box = _series(root, "a box")
    assert len(box.findall(f"{NS}path")) == 2  # box with whiskers, and the median
    rings = [g for g in root.iter(f"{NS}g") if g.get("stroke-opacity") == "0.4"]
    assert len(stats.fliers) == 20 and len(rings[0].findall(f"{NS}path")) == 10


def test_text_is_escaped():
    chart = svg.Chart(svg.Scale(0.0, 1.0), svg.category_scale(["<a&b>"]), height=120, xlabel='"x" & <y>')
    chart.points([0.5], [0.0], svg.PALETTE[0], title="<script>", label="<b>")
    text = chart.svg()
    assert "<script>" not in text and "&lt;script&gt;" in text
    root = ET.fromstring(text)
    assert "<a&b>" in ["".join(t.itertext()) for t in root.iter(f"{NS}text")]


def test_every_marker_outline_closes():
    for marker in svg.MARKERS:
        d = svg.marker_path(marker, 3.0)
        assert d.startswith("m") and d.endswith("z")
        if marker in svg.POLYGONS:
            steps = [tuple(map(float, s.split())) for s in re.findall(r"l(-?[\d.]+ -?[\d.]+)", d)]
            sides = svg.POLYGONS[marker][0] * (2 if svg.POLYGONS[marker][2] else 1)
            assert len(steps) == sides - 1


# --- the four plots ---------------------------------------------------------------------------------


@pytest.mark.parametrize("plot", PLOTS, ids=lambda p: p.__name__)
def test_each_plot_is_svg_that_parses_and_names_each_adapter(plot):
    text = plot(_rows())
    assert text.startswith("<svg ") and text.endswith("</svg>")
    root = ET.fromstring(text)
    assert root.tag == f"{NS}svg" and root.get("width") == "810"
    titles = [t.text or "" for t in root.iter(f"{NS}title")]
    assert any(t.startswith("numpy") for t in titles) and any(t.startswith("torch") for t in titles)


@pytest.mark.parametrize("plot", PLOTS, ids=lambda p: p.__name__)
def test_each_plot_is_none_with_nothing_to_plot(plot):
    assert plot(_rows().iloc[:0]) is None
    untimed_unrated = _rows().assign(bound_ratio=np.nan, time_median_ms=np.nan, K=0.0)
    assert plot(untimed_unrated) is None


@pytest.mark.parametrize("plot", PLOTS, ids=lambda p: p.__name__)
def test_each_plot_renders_the_same_bytes_twice(plot):
    rows = _rows(700)
    assert plot(rows) == plot(rows)


def test_markers_per_adapter_are_capped_at_max_points():
    rows = _rows(plots.MAX_POINTS + 400)
    for plot, title in ((plots.ratio_distribution, "numpy (1000 rows)"), (plots.ratio_vs_k, "numpy"),
                        (plots.time_vs_flops, "numpy")):
        root = ET.fromstring(plot(rows))
        assert len(_centres(_series(root, title))) == plots.MAX_POINTS
    assert len(ET.fromstring(plots.time_vs_flops(rows)).findall(f".//{NS}path")) < 3 * plots.MAX_POINTS + 100


def test_a_zero_ratio_is_drawn_at_1e_minus_3_like_before():
    rows = _rows(3, adapters=("numpy",)).assign(bound_ratio=[0.0, 1.0, 2.0])
    root = ET.fromstring(plots.ratio_distribution(rows))
    xs = sorted(x for x, _ in _centres(_series(root, "numpy (3 rows)")))
    assert xs[0] == pytest.approx(_tick_x(root, "10−3"), abs=0.051)
    assert xs[1] == pytest.approx(_tick_x(root, "100"), abs=0.051)


def test_infinite_and_nan_rows_never_land_at_a_bogus_place():
    rows = _rows(4, adapters=("numpy",)).assign(K=[4.0, np.inf, 8.0, 16.0], flops=[1e3, np.nan, np.inf, 1e5])
    k = ET.fromstring(plots.ratio_vs_k(rows))
    assert len(_centres(_series(k, "numpy"))) == 3
    t = ET.fromstring(plots.time_vs_flops(rows))
    assert len(_centres(_series(t, "numpy"))) == 2


def test_tolerance_lines_are_dashed_with_a_legend_entry_per_c():
    rows = pd.concat([_rows(5, adapters=("numpy",)),
                      _rows(5, adapters=("numpy",)).assign(dtype="float64", tolerance_c=8.0)], ignore_index=True)
    text = plots.ratio_vs_k(rows)
    root = ET.fromstring(text)
    dashed = [p for p in root.iter(f"{NS}path") if p.get("stroke") == plots.TOLERANCE and p.get("stroke-dasharray")]
    assert len(dashed) == 4  # two lines and their two legend swatches
    labels = ["".join(t.itertext()) for t in root.iter(f"{NS}text")]
    assert "tolerance C=8 (float64)" in labels and "tolerance C=16 (float32)" in labels


def test_plots_need_no_matplotlib(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    with pytest.raises(ImportError):
        import matplotlib  # noqa: F401
    rows = _rows()
    assert all(plot(rows) for plot in PLOTS)
    from refconv.report import write_reports

    run = Path(shutil.copytree(Path(__file__).parent / "data" / "runs" / "regressed", tmp_path / "run"))
    page = write_reports(run)[1].read_text()
    assert page.count('<figure class="plot"><svg ') >= 3


# --- embedding --------------------------------------------------------------------------------------


def test_figure_embeds_the_svg_named_by_its_alt_text():
    text = figure(plots.ratio_vs_k(_rows()), 'ratio "vs" K')
    assert text.startswith('<figure class="plot"><svg ') and text.endswith("</svg></figure>")
    root = ET.fromstring(text).find(f"{NS}svg")
    assert root.get("role") == "img" and root.get("aria-label") == 'ratio "vs" K'
    assert root.find(f"{NS}title").text == 'ratio "vs" K'
    assert figure(None, "GFLOP/s") == '<p class="small">(no data to plot: GFLOP/s)</p>'
