"""SVG drawing primitives for the report's plots: scales with decade ticks, and a chart of points, bars, boxes.

Plain Python and NumPy, written straight to text: a chart of a few thousand points renders in milliseconds,
where matplotlib's import alone cost 0.5 s of every report. Coordinates are rounded to 0.1 px; each series
is one <g> that carries its style and a <title> (hovering a point names its series); a point is one <path>
whose only data is its position followed by its marker's outline.

>>> chart = Chart(log_scale([1, 100]), linear_scale([0, 1]), height=200, xlabel="K")  # doctest: +SKIP
>>> chart.points([10], [0.5], PALETTE[0], title="numpy"); chart.svg()                  # doctest: +SKIP
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

WIDTH = 810  # 9 in at 90 dpi, the size of the PNGs these pictures replace
FONT = 11  # px; tick labels and axis labels
CHAR = 0.6 * FONT  # a generous average glyph width: margins and the legend are laid out without font metrics
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")  # matplotlib's tab10
MARKERS = "os^Dv<>ph*"
DASHES = ("5 3", "1.5 2", "6 2 1.5 2")  # matplotlib's '--', ':', '-.'
# Marker outlines: (vertices, angle of the first in degrees, inner radius of a star or 0).
POLYGONS = {"s": (4, 45.0, 0.0), "^": (3, 90.0, 0.0), "v": (3, -90.0, 0.0), "<": (3, 180.0, 0.0),
            ">": (3, 0.0, 0.0), "D": (4, 0.0, 0.0), "p": (5, 90.0, 0.0), "h": (6, 90.0, 0.0), "*": (5, 90.0, 0.45)}


class Tick(NamedTuple):
    """A labelled position on an axis; `sup` is an exponent drawn raised (10 with sup '−3' reads 10^-3)."""

    value: float
    text: str
    sup: str = ""


@dataclass(frozen=True)
class Scale:
    """A data range [lo, hi] mapped onto [0, 1], linear or log10; `labels` name the categories 0, 1, ..."""

    lo: float
    hi: float
    log: bool = False
    labels: tuple[str, ...] = ()

    def fraction(self, values: ArrayLike) -> np.ndarray:
        """Where values sit between lo (0) and hi (1); NaN for what cannot be drawn (NaN, inf, <= 0 on log)."""
        v = np.asarray(values, dtype=float)
        lo, hi = self.lo, self.hi
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.log:
                v, lo, hi = np.log10(v), math.log10(lo), math.log10(hi)
            f = (v - lo) / (hi - lo)
        return np.where(np.isfinite(f), f, np.nan)

    def ticks(self) -> list[Tick]:
        """The labelled ticks inside the range: categories, decades on a log scale, 1-2-5 steps otherwise."""
        if self.labels:
            return [Tick(float(i), label) for i, label in enumerate(self.labels)]
        return _log_ticks(self.lo, self.hi) if self.log else _linear_ticks(self.lo, self.hi)

    def minor(self) -> list[float]:
        """Unlabelled ticks at 2..9 x 10^k on a log scale of at most 6 decades (none otherwise)."""
        if not self.log or math.log10(self.hi / self.lo) > 6:
            return []
        first, last = math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi))
        values = (m * 10.0**k for k in range(first, last + 1) for m in range(2, 10))
        return [v for v in values if self.lo <= v <= self.hi]


def _log_ticks(lo: float, hi: float) -> list[Tick]:
    first = math.ceil(math.log10(lo) - 1e-9)
    last = math.floor(math.log10(hi) + 1e-9)
    step = max(1, math.ceil((last - first + 1) / 9))  # at most 9 labels: 15 decades are labelled every 2nd
    return [Tick(10.0**k, "10", str(k).replace("-", "−")) for k in range(first, last + 1) if k % step == 0]


def _linear_ticks(lo: float, hi: float) -> list[Tick]:
    raw = (hi - lo) / 6
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ks = range(math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9) + 1)
    return [Tick(round(k * step, 12) + 0.0, f"{round(k * step, 12) + 0.0:g}") for k in ks]


def _finite(values: Sequence[ArrayLike], positive: bool = False) -> np.ndarray:
    parts = [np.asarray(v, dtype=float).ravel() for v in values]
    v = np.concatenate(parts) if parts else np.empty(0)
    keep = np.isfinite(v) & (v > 0) if positive else np.isfinite(v)
    return v[keep]


def log_scale(*values: ArrayLike, margin: float = 0.05) -> Scale | None:
    """A log scale over the finite positive values, with at least two decades labelled; None without any.

    >>> log_scale([2, 5]).ticks()[0].sup, log_scale([2, 5]).ticks()[-1].sup
    ('0', '1')
    """
    v = _finite(values, positive=True)
    if v.size == 0:
        return None
    lo, hi = math.log10(v.min()), math.log10(v.max())
    if hi - lo < 1e-12:  # one value: a decade around it
        lo, hi = lo - 0.5, hi + 0.5
    pad = margin * (hi - lo)
    lo, hi = lo - pad, hi + pad
    if math.floor(hi) - math.ceil(lo) < 1:  # fewer than two decade ticks inside: widen to whole decades
        lo, hi = math.floor(lo), math.ceil(hi)
    return Scale(10.0**lo, 10.0**hi, log=True)


def linear_scale(*values: ArrayLike, margin: float = 0.05) -> Scale | None:
    """A linear scale over the finite values with a margin each side; None without any."""
    v = _finite(values)
    if v.size == 0:
        return None
    lo, hi = float(v.min()), float(v.max())
    if hi - lo <= 1e-12 * max(abs(lo), 1.0):  # one value: +-10% of it, or +-0.5 around 0
        half = 0.1 * abs(lo) or 0.5
        lo, hi = lo - half, hi + half
    pad = margin * (hi - lo)
    return Scale(lo - pad, hi + pad)


def category_scale(labels: Sequence[str]) -> Scale:
    """Categories at 0, 1, ..., n-1, each with a unit of room."""
    return Scale(-0.5, len(labels) - 0.5, labels=tuple(labels))


class BoxStats(NamedTuple):
    """A box plot's numbers: quartiles, whisker ends, and the points beyond them."""

    q1: float
    median: float
    q3: float
    low: float
    high: float
    fliers: np.ndarray


def box_stats(values: ArrayLike) -> BoxStats | None:
    """Quartiles, whiskers at the furthest data within 1.5 IQR of the box (matplotlib's rule), the rest fliers."""
    v = _finite([values])
    if v.size == 0:
        return None
    q1, median, q3 = (float(q) for q in np.percentile(v, [25, 50, 75]))
    iqr = q3 - q1
    inside = v[(v >= q1 - 1.5 * iqr) & (v <= q3 + 1.5 * iqr)]
    low = min(float(inside.min()), q1) if inside.size else q1
    high = max(float(inside.max()), q3) if inside.size else q3
    return BoxStats(q1, median, q3, low, high, v[(v < low) | (v > high)])


def marker_path(marker: str, r: float) -> str:
    """A marker's outline of radius r as relative path data, to follow the 'M x y' of its centre."""
    if marker not in POLYGONS:  # 'o' and anything unknown: a circle
        return f"m{_n(-r)} 0a{_n(r)} {_n(r)} 0 1 0 {_n(2 * r)} 0a{_n(r)} {_n(r)} 0 1 0 {_n(-2 * r)} 0z"
    sides, start, inner = POLYGONS[marker]
    radius = r * (1.25 if sides == 4 and start == 45.0 else 1.2)  # a square's corners reach further than r
    count = sides * 2 if inner else sides
    corners = []
    for i in range(count):
        a = math.radians(start + 360.0 * i / count)
        reach = radius * (inner if inner and i % 2 else 1.0)
        corners.append((round(reach * math.cos(a), 1), round(-reach * math.sin(a), 1)))
    steps = [f"l{_n(x1 - x0)} {_n(y1 - y0)}" for (x0, y0), (x1, y1) in zip(corners, corners[1:], strict=False)]
    return f"m{_n(corners[0][0])} {_n(corners[0][1])}" + "".join(steps) + "z"


def marker_style(marker: str, r: float, colour: str, opacity: float) -> tuple[str, str]:
    """(attributes of a series' <g>, path data after each point's 'M x y') for markers of radius r.

    A circle is a zero-length line with round caps, 'h0': a third of the bytes of an arc outline. Each marker
    stays its own element so overlapping points darken as matplotlib's alpha did.
    """
    if marker == "o":
        return (f'fill="none" stroke="{colour}" stroke-opacity="{opacity:g}" stroke-width="{_n(2 * r)}" '
                'stroke-linecap="round"', "h0")
    return f'fill="{colour}" fill-opacity="{opacity:g}"', marker_path(marker, r)


def _n(value: float) -> str:
    """A coordinate to 0.1 px, without a trailing '.0' or a '-0'."""
    text = f"{value:.1f}"
    text = text[:-2] if text.endswith(".0") else text
    return "0" if text == "-0" else text


def esc(text: object) -> str:
    """Text escaped for SVG character data and attribute values."""
    return html.escape(str(text), quote=True)


@dataclass(frozen=True)
class Area:
    """The plot area in pixels, and the scales that map data into it (y grows upwards)."""

    left: float
    top: float
    right: float
    bottom: float
    x: Scale
    y: Scale

    def px(self, values: ArrayLike) -> np.ndarray:
        """x pixel of each value, rounded to 0.1; NaN where it cannot be drawn."""
        return np.round(self.left + self.x.fraction(values) * (self.right - self.left), 1)

    def py(self, values: ArrayLike) -> np.ndarray:
        """y pixel of each value, rounded to 0.1; NaN where it cannot be drawn."""
        return np.round(self.bottom - self.y.fraction(values) * (self.bottom - self.top), 1)


class Legend(NamedTuple):
    """One legend entry: a marker swatch when `marker` is set, else a line (dashed by `dash`)."""

    label: str
    colour: str
    marker: str = ""
    dash: str = ""


Draw = Callable[[Area], str]


class Chart:
    """One SVG picture: a framed plot area with two scales, drawing operations in order, a legend above it."""

    def __init__(self, x: Scale, y: Scale, height: int, xlabel: str = "", ylabel: str = "",
                 grid: str = "xy", width: int = WIDTH) -> None:
        self.x, self.y, self.height, self.width = x, y, height, width
        self.xlabel, self.ylabel, self.grid = xlabel, ylabel, grid
        self.draws: list[Draw] = []
        self.legend: list[Legend] = []

    def points(self, x: ArrayLike, y: ArrayLike, colour: str, marker: str = "o", r: float = 2.0,
               opacity: float = 0.5, title: str = "", label: str = "") -> None:
        """One series of markers (NaN, inf and non-positive-on-log values are skipped), in one colour."""
        style, shape = marker_style(marker, r, colour, opacity)

        def draw(area: Area) -> str:
            xs, ys = area.px(x), area.py(y)
            keep = np.isfinite(xs) & np.isfinite(ys)
            body = "".join(f'<path d="M{_n(a)} {_n(b)}{shape}"/>' for a, b in zip(xs[keep].tolist(), ys[keep].tolist(),
                                                                                  strict=True))
            return f"<g {style}>{_title(title)}{body}</g>"

        self.draws.append(draw)
        if label:
            self.legend.append(Legend(label, colour, marker=marker))

    def bars(self, x: ArrayLike, y0: ArrayLike, y1: ArrayLike, colour: str, opacity: float = 0.5,
             stroke: float = 0.6, title: str = "") -> None:
        """Vertical segments from y0 to y1 at each x, as one path (segments with an undrawable end are skipped)."""

        def draw(area: Area) -> str:
            xs, lows, highs = area.px(x), area.py(y0), area.py(y1)
            keep = np.isfinite(xs) & np.isfinite(lows) & np.isfinite(highs)
            d = "".join(f"M{_n(a)} {_n(b)}V{_n(c)}" for a, b, c in zip(xs[keep].tolist(), lows[keep].tolist(),
                                                                        highs[keep].tolist(), strict=True))
            return (f'<g fill="none" stroke="{colour}" stroke-width="{stroke:g}" stroke-opacity="{opacity:g}">'
                    f'{_title(title)}<path d="{d}"/></g>') if d else ""

        self.draws.append(draw)

    def box(self, stats: BoxStats, at: float, width: float = 0.6, title: str = "", fliers: int = 0,
            seed: int = 0) -> None:
        """A horizontal box at y = at: quartile box, median line, whiskers with caps, and up to `fliers` fliers."""
        shown = stats.fliers
        if len(shown) > fliers:  # a fixed draw keeps the picture the same on every render
            shown = np.random.default_rng(seed).choice(shown, fliers, replace=False) if fliers else shown[:0]

        def draw(area: Area) -> str:
            q1, med, q3, low, high = area.px([stats.q1, stats.median, stats.q3, stats.low, stats.high]).tolist()
            y, top, bottom, cap0, cap1 = area.py([at, at + width / 2, at - width / 2, at + width / 4,
                                                  at - width / 4]).tolist()
            if not all(math.isfinite(v) for v in (q1, med, q3, y)):
                return ""
            d = f"M{_n(q1)} {_n(top)}H{_n(q3)}V{_n(bottom)}H{_n(q1)}Z"
            for end, edge in ((low, q1), (high, q3)):
                if math.isfinite(end):
                    d += f"M{_n(edge)} {_n(y)}H{_n(end)}M{_n(end)} {_n(cap0)}V{_n(cap1)}"
            out = (f'<g fill="none" stroke="#000">{_title(title)}<path d="{d}"/>'
                   f'<path d="M{_n(med)} {_n(top)}V{_n(bottom)}" stroke-width="1.5"/></g>')
            if len(shown):
                xs = area.px(shown)
                ring = marker_path("o", 1.3)
                out += ('<g fill="none" stroke="#000" stroke-opacity="0.4">'
                        + "".join(f'<path d="M{_n(a)} {_n(y)}{ring}"/>' for a in xs[np.isfinite(xs)].tolist())
                        + "</g>")
            return out

        self.draws.append(draw)

    def reference(self, value: float, axis: str, colour: str, dash: str = DASHES[0], label: str = "") -> None:
        """A line across the plot area at a data value on axis 'x' (vertical line) or 'y' (horizontal)."""

        def draw(area: Area) -> str:
            if axis == "x":
                at = float(area.px([value])[0])
                d = f"M{_n(at)} {_n(area.top)}V{_n(area.bottom)}"
            else:
                at = float(area.py([value])[0])
                d = f"M{_n(area.left)} {_n(at)}H{_n(area.right)}"
            if not math.isfinite(at):
                return ""
            return (f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="1.2" stroke-dasharray="{dash}">'
                    f"{_title(label)}</path>")

        self.draws.append(draw)
        if label:
            self.legend.append(Legend(label, colour, dash=dash))

    def area(self) -> Area:
        """Where the plot area sits, from the tick labels' widths, the axis labels and the legend's rows."""
        widest = max((len(t.text) + 0.7 * len(t.sup) for t in self.y.ticks()), default=0)
        left = 10 + (18 if self.ylabel else 0) + widest * CHAR + 8
        bottom = self.height - (20 + (20 if self.xlabel else 0))
        top = 10 + 16 * len(_legend_rows(self.legend, self.width - left - 12))
        return Area(round(left, 1), top, self.width - 12, bottom, self.x, self.y)

    def svg(self) -> str:
        """The whole picture as an <svg> element."""
        area = self.area()
        parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
                 f'viewBox="0 0 {self.width} {self.height}" font-family="sans-serif" font-size="{FONT}">',
                 f'<rect width="{self.width}" height="{self.height}" fill="#fff"/>',
                 _grid(area, self.grid)]
        parts += [draw(area) for draw in self.draws]
        parts += [f'<rect x="{_n(area.left)}" y="{_n(area.top)}" width="{_n(area.right - area.left)}" '
                  f'height="{_n(area.bottom - area.top)}" fill="none" stroke="#000"/>',
                  _axes(area), _labels(area, self.xlabel, self.ylabel, self.height), _legend(area, self.legend),
                  "</svg>"]
        return "".join(parts)


def _title(text: str) -> str:
    return f"<title>{esc(text)}</title>" if text else ""


def _grid(area: Area, which: str) -> str:
    d = ""
    if "x" in which:
        d += "".join(f"M{_n(x)} {_n(area.top)}V{_n(area.bottom)}" for x in _inside(area.px, area.x.ticks()))
    if "y" in which:
        d += "".join(f"M{_n(area.left)} {_n(y)}H{_n(area.right)}" for y in _inside(area.py, area.y.ticks()))
    return f'<path d="{d}" fill="none" stroke="#000" stroke-opacity="0.12"/>' if d else ""


def _inside(to_px: Callable[[ArrayLike], np.ndarray], ticks: Sequence[Tick | float]) -> list[float]:
    values = [t.value if isinstance(t, Tick) else t for t in ticks]
    pixels = to_px(values) if values else np.empty(0)
    return [float(p) for p in pixels if math.isfinite(p)]


def _axes(area: Area) -> str:
    """Tick marks outside the frame (minor ones shorter) and their labels."""
    d = "".join(f"M{_n(x)} {_n(area.bottom)}v4" for x in _inside(area.px, area.x.ticks()))
    d += "".join(f"M{_n(x)} {_n(area.bottom)}v2" for x in _inside(area.px, area.x.minor()))
    d += "".join(f"M{_n(area.left)} {_n(y)}h-4" for y in _inside(area.py, area.y.ticks()))
    d += "".join(f"M{_n(area.left)} {_n(y)}h-2" for y in _inside(area.py, area.y.minor()))
    xs = [f'<text x="{_n(float(area.px([t.value])[0]))}" y="{_n(area.bottom + 17)}">{_tick_text(t)}</text>'
          for t in area.x.ticks()]
    ys = [f'<text x="{_n(area.left - 7)}" y="{_n(float(area.py([t.value])[0]) + 4)}">{_tick_text(t)}</text>'
          for t in area.y.ticks()]
    return (f'<path d="{d}" stroke="#000"/><g text-anchor="middle">{"".join(xs)}</g>'
            f'<g text-anchor="end">{"".join(ys)}</g>')


def _tick_text(tick: Tick) -> str:
    sup = f'<tspan dy="-5" font-size="{FONT - 3}">{esc(tick.sup)}</tspan>' if tick.sup else ""
    return esc(tick.text) + sup


def _labels(area: Area, xlabel: str, ylabel: str, height: int) -> str:
    out = ""
    if xlabel:
        centre = _n((area.left + area.right) / 2)
        out += f'<text x="{centre}" y="{height - 7}" text-anchor="middle">{esc(xlabel)}</text>'
    if ylabel:
        middle = _n((area.top + area.bottom) / 2)
        out += (f'<text transform="rotate(-90 14 {middle})" x="14" y="{middle}" text-anchor="middle">'
                f"{esc(ylabel)}</text>")
    return out


LEGEND_FONT = FONT - 1


def _entry_width(entry: Legend) -> float:
    return 28 + len(entry.label) * 0.6 * LEGEND_FONT + 16


def _legend_rows(entries: Sequence[Legend], room: float) -> list[list[Legend]]:
    """Entries flowed left to right into rows no wider than `room` pixels."""
    rows: list[list[Legend]] = []
    used = room
    for entry in entries:
        if used + _entry_width(entry) > room and (not rows or rows[-1]):
            rows.append([])
            used = 0.0
        rows[-1].append(entry)
        used += _entry_width(entry)
    return rows


def _legend(area: Area, entries: Sequence[Legend]) -> str:
    """The legend in rows above the plot area (it never hides a point)."""
    out = []
    for i, row in enumerate(_legend_rows(entries, area.right - area.left)):
        x, y = area.left, 14 + 16 * i
        for entry in row:
            if entry.marker:
                swatch = f'<path d="M{_n(x + 12)} {_n(y - 4)}{marker_path(entry.marker, 3)}" fill="{entry.colour}"/>'
            else:
                swatch = (f'<path d="M{_n(x)} {_n(y - 4)}h24" stroke="{entry.colour}" '
                          f'stroke-dasharray="{entry.dash}"/>')
            out.append(f'{swatch}<text x="{_n(x + 28)}" y="{_n(y)}">{esc(entry.label)}</text>')
            x += _entry_width(entry)
    return f'<g font-size="{LEGEND_FONT}">{"".join(out)}</g>' if out else ""
