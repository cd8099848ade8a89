"""The tutorial's experiment on a real photograph, for the reference and every available framework.

An RGB photo (scaled to [0, 1] floats) goes through one conv layer with two output channels
(SEMANTICS.md, "The tutorial's own demo"):

- channel 0, edge detector: the 3x3 kernel with 8 in the centre and -1 around it, the same on each of
  R, G and B (so the three responses are summed), bias 1;
- channel 1, box blur: 3x3, every weight 1/9 on each of R, G and B (a blur of R + G + B, range
  [0, 3]), bias 0;

at stride 1 and stride 2 with SAME padding, optionally followed by ReLU. The reference computes in
float64; each framework gets the float32 inputs through its adapter, in its own spawn subprocess (no
framework is imported in this process), and its max abs difference from the reference is printed
under its panels. The edge channel is shown after contrast-limited adaptive histogram equalisation
(CLAHE, `equalize_adaptive`, written here in NumPy), as in the tutorial.
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from refconv.compare import Comparison, compare
from refconv.errors import UsageError
from refconv.reference import for_spec
from refconv.spec import ConvSpec

SAMPLE_IMAGE = "grace_hopper.jpg"  # ships with matplotlib: nothing is downloaded
STRIDES = (1, 2)
PANEL_IN, DPI = 3.2, 100  # panels of about 300 px: the (reduced) photo at stride 1 is shown near 1:1
MAX_SIDE = 320  # larger photos are block-averaged down so a panel shows stride 1 near 1:1 (thin edges survive)
EDGE_BIAS, BLUR_BIAS = 1.0, 0.0
KERNEL_TEXT = (
    "edge: 3x3 [-1 .. 8 .. -1] on each of R,G,B, bias 1 (shown after CLAHE: 8x8 tiles, clip 0.01, numpy)\n"
    "blur: 3x3 all 1/9 on each of R,G,B (a blur of R+G+B), bias 0; SAME padding"
)


def demo_kernel(c_in: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(w HWIO (3, 3, c_in, 2), b (2,)): the edge detector and the box blur of the tutorial."""
    edge = -np.ones((3, 3))
    edge[1, 1] = 8.0
    w = np.empty((3, 3, c_in, 2))
    w[:, :, :, 0] = edge[:, :, None]
    w[:, :, :, 1] = 1.0 / 9.0
    return w, np.array([EDGE_BIAS, BLUR_BIAS])


def load_image(path: str | None = None, max_side: int = MAX_SIDE) -> tuple[np.ndarray, str]:
    """(HWC RGB float64 image in [0, 1], its name); the default is matplotlib's bundled sample photo."""
    import matplotlib.image as mpimg

    if path is None:
        from matplotlib import cbook

        path = str(cbook.get_sample_data(SAMPLE_IMAGE, asfileobj=False))
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--image {path!r}: no such file")
    try:
        raw = mpimg.imread(p)
    except Exception as exc:  # PIL and matplotlib raise several types for an unreadable image
        raise UsageError(f"--image {path!r}: not a readable image ({type(exc).__name__}: {exc})") from None
    return _to_rgb01(raw, max_side), p.name


def _to_rgb01(raw: np.ndarray, max_side: int) -> np.ndarray:
    img = raw.astype(np.float64)
    if np.issubdtype(raw.dtype, np.integer):
        img /= np.iinfo(raw.dtype).max
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = img[:, :, :3]  # drop alpha
    factor = math.ceil(max(img.shape[:2]) / max_side)
    if factor > 1:
        h, w = img.shape[0] // factor, img.shape[1] // factor
        img = img[: h * factor, : w * factor].reshape(h, factor, w, factor, 3).mean(axis=(1, 3))
    return np.clip(img, 0.0, 1.0)


def _tile_weights(size: int, tiles: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each pixel along an axis: the two nearest tile centres and the weight of the second."""
    edges = np.linspace(0, size, tiles + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    pos = np.arange(size) + 0.5
    if tiles == 1:
        zeros = np.zeros(size, dtype=np.int64)
        return zeros, zeros, np.zeros(size)
    i0 = np.clip(np.searchsorted(centres, pos, side="right") - 1, 0, tiles - 2)
    wt = np.clip((pos - centres[i0]) / (centres[i0 + 1] - centres[i0]), 0.0, 1.0)
    return i0, i0 + 1, wt


def equalize_adaptive(img: np.ndarray, tiles: int = 8, clip_limit: float = 0.01, bins: int = 256) -> np.ndarray:
    """CLAHE of a 2-D image, returned in [0, 1]: per-tile clipped histograms, bilinear between tiles."""
    img = np.asarray(img, dtype=np.float64)
    if img.size == 0 or img.min() == img.max():
        return np.zeros_like(img)
    lo, hi = float(img.min()), float(img.max())
    idx = np.minimum(((img - lo) / (hi - lo) * bins).astype(np.int64), bins - 1)
    ty, tx = min(tiles, img.shape[0]), min(tiles, img.shape[1])
    rows, cols = np.linspace(0, img.shape[0], ty + 1).astype(int), np.linspace(0, img.shape[1], tx + 1).astype(int)
    maps = np.empty((ty, tx, bins))
    for a in range(ty):
        for b in range(tx):
            tile = idx[rows[a]: rows[a + 1], cols[b]: cols[b + 1]]
            hist = np.bincount(tile.ravel(), minlength=bins).astype(np.float64)
            limit = max(clip_limit * tile.size, 1.0)  # skimage's convention: a share of the tile's pixels
            hist = np.minimum(hist, limit) + np.maximum(hist - limit, 0).sum() / bins
            maps[a, b] = np.cumsum(hist) / hist.sum()
    y0, y1, wy = _tile_weights(img.shape[0], ty)
    x0, x1, wx = _tile_weights(img.shape[1], tx)
    y0, y1, wy = y0[:, None], y1[:, None], wy[:, None]
    top = maps[y0, x0, idx] * (1 - wx) + maps[y0, x1, idx] * wx
    bottom = maps[y1, x0, idx] * (1 - wx) + maps[y1, x1, idx] * wx
    return top * (1 - wy) + bottom * wy


def demo_spec(image: np.ndarray, stride: int, relu: bool) -> ConvSpec:
    """The ConvSpec of one demo layer (float32, the dtype the frameworks are given)."""
    return ConvSpec(n=1, h=image.shape[0], w=image.shape[1], c_in=3, c_out=2, kh=3, kw=3, strides=(stride, stride),
                    padding="SAME", activation="relu" if relu else None, name=f"demo_stride{stride}")


@dataclass
class EngineRun:
    """One engine's outputs per stride (NHWC float64), or why it has none."""

    label: str
    version: str = ""
    outputs: dict[int, np.ndarray] = field(default_factory=dict)
    error: str = ""

    def max_abs_diff(self, reference: dict[int, np.ndarray], stride: int, channel: int | None = None) -> float:
        """max |engine - reference| at one stride, over one output channel or both."""
        got, want = self.outputs[stride], reference[stride]
        if channel is not None:
            got, want = got[..., channel], want[..., channel]
        return float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0


@dataclass
class DemoResult:
    """Everything the figure shows: the image, the reference outputs and each engine's."""

    image: np.ndarray
    image_name: str
    relu: bool
    reference: dict[int, np.ndarray]
    bounds: dict[int, np.ndarray]
    engines: list[EngineRun]

    def verdict(self, run: EngineRun, stride: int) -> Comparison:
        """refconv's comparison record of one engine's output at one stride (tolerance model of compare.py)."""
        spec = demo_spec(self.image, stride, self.relu)
        return compare(spec, self.reference[stride], self.bounds[stride], run.outputs[stride])


def _engine_worker(name: str, x: np.ndarray, w: np.ndarray, b: np.ndarray, specs: list[ConvSpec]) -> EngineRun:
    """Runs in a fresh spawn process: the framework is imported here only."""
    import adapters

    adapter = adapters.load(name)
    run = EngineRun(label=name, version=str(adapter.version()))
    for spec in specs:
        reason = adapter.supports(spec)
        if reason:
            run.error = f"unsupported: {reason}"
            return run
        try:
            run.outputs[spec.strides[0]] = np.asarray(adapter.conv2d(x, w, b, spec))
        except Exception as exc:  # the framework raising is a result to show, not a demo failure
            run.error = f"raised {type(exc).__name__}: {exc}"
            return run
    return run


def default_adapters() -> list[str]:
    """Every known adapter that can run here, the numpy one aside (it is the reference's own algorithm)."""
    import adapters

    return [name for name in sorted(adapters.known()) if name != "numpy" and adapters.unavailable_reason(name) is None]


def _check_adapters(names: list[str]) -> None:
    import adapters

    for name in names:
        reason = adapters.unavailable_reason(name)  # an unknown name raises AdapterError listing the choices
        if reason:
            raise UsageError(f"adapter {name!r} cannot run here: {reason}")


def run_engines(names: list[str], image: np.ndarray, relu: bool) -> list[EngineRun]:
    """Each adapter in its own spawn subprocess (max_tasks_per_child=1), all at once."""
    import multiprocessing

    w, b = demo_kernel()
    x = image[np.newaxis].astype(np.float32)
    specs = [demo_spec(image, s, relu) for s in STRIDES]
    if not names:
        return []
    runs = []
    with ProcessPoolExecutor(max_workers=len(names), mp_context=multiprocessing.get_context("spawn"),
                             max_tasks_per_child=1) as pool:
        futures = {name: pool.submit(_engine_worker, name, x, w.astype(np.float32), b.astype(np.float32), specs)
                   for name in names}
        for name, future in futures.items():
            try:
                runs.append(future.result())
            except BrokenProcessPool:
                runs.append(EngineRun(label=name, error="crashed: its worker process died"))
            except Exception as exc:
                runs.append(EngineRun(label=name, error=f"raised {type(exc).__name__}: {exc}"))
    return runs


def compute(
    image: np.ndarray, image_name: str, relu: bool = False, adapter_names: list[str] | None = None
) -> DemoResult:
    """The reference at each stride (float64, on the float32-rounded inputs the frameworks get) and each engine."""
    names = default_adapters() if adapter_names is None else adapter_names
    _check_adapters(names)
    w, b = demo_kernel()
    x = image[np.newaxis].astype(np.float32)
    pairs = {s: for_spec(demo_spec(image, s, relu), x, w.astype(np.float32), b.astype(np.float32)) for s in STRIDES}
    reference = {s: pair[0] for s, pair in pairs.items()}
    bounds = {s: pair[1] for s, pair in pairs.items()}
    return DemoResult(image, image_name, relu, reference, bounds, run_engines(names, image, relu))


def summary_lines(result: DemoResult) -> list[str]:
    """One line per engine: version and max abs difference from the reference per stride."""
    lines = []
    for run in result.engines:
        if run.error:
            lines.append(f"{run.label}: {run.error}")
            continue
        diffs = ", ".join(f"stride {s}: {run.max_abs_diff(result.reference, s):.2e} "
                          f"({_verdict_text(result.verdict(run, s))})" for s in STRIDES)
        lines.append(f"{run.label} {run.version}: max abs diff from the reference: {diffs}")
    return lines


def _verdict_text(c: Comparison) -> str:
    if c.outcome == "pass":
        return f"pass, bound ratio {c.bound_ratio:.2g}"
    if c.outcome == "mismatch":
        return f"MISMATCH: {c.mismatched} elements, bound ratio {c.bound_ratio:.2g} > {c.tolerance_c:g}"
    return f"{c.outcome.upper()}: {c.error}"


def _show(ax: Any, img: np.ndarray, title: str, note: str = "", **kw: Any) -> None:
    ax.imshow(img, interpolation="antialiased", **kw)  # panels are smaller than the photo: nearest aliases
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(note, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def render(result: DemoResult, out: str | Path) -> Path:
    """Draw the figure: a row for the reference and each engine; input, then edge and blur per stride."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("reference (float64)", None)] + [(f"{r.label} {r.version}".strip(), r) for r in result.engines]
    height = PANEL_IN * 1.3 * len(rows) + 0.6
    fig, axes = plt.subplots(len(rows), 1 + 2 * len(STRIDES), figsize=(PANEL_IN * (1 + 2 * len(STRIDES)), height),
                             squeeze=False, layout="constrained")
    blur_range = {s: (float(result.reference[s][..., 1].min()), float(result.reference[s][..., 1].max()))
                  for s in STRIDES}
    for i, (label, run) in enumerate(rows):
        _row_head(axes[i, 0], result, label, run, first=i == 0)
        for j, s in enumerate(STRIDES):
            outputs = result.reference if run is None else run.outputs
            for c, name in ((0, "edge"), (1, "blur")):
                ax = axes[i, 1 + 2 * j + c]
                if s not in outputs:
                    ax.axis("off")
                    continue
                y = outputs[s][0, :, :, c].astype(np.float64)
                note = f"{y.shape[0]}x{y.shape[1]} output" if run is None else \
                    f"max |diff| {run.max_abs_diff(result.reference, s, c):.2e}"
                title = f"{name}, stride {s}" + (" + ReLU" if result.relu else "")
                if c == 0:
                    _show(ax, equalize_adaptive(y), title, note, cmap="gray", vmin=0, vmax=1)
                else:
                    _show(ax, y, title, note, cmap="gray", vmin=blur_range[s][0], vmax=blur_range[s][1])
    fig.suptitle(f"refconv demo: {result.image_name} ({result.image.shape[0]}x{result.image.shape[1]} RGB in [0,1]) "
                 f"through one conv layer with 2 output channels\n{KERNEL_TEXT}", fontsize=10)
    out = Path(out)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out


def _row_head(ax: Any, result: DemoResult, label: str, run: EngineRun | None, first: bool) -> None:
    """First column: the input photo for the reference row, the engine's name and diffs for the others."""
    if first:
        _show(ax, result.image, "input", f"this row: {label}")
        return
    ax.axis("off")
    assert run is not None
    if run.error:
        text = f"{label}\n\n{run.error}"
    else:
        diffs = "\n".join(f"stride {s}: {run.max_abs_diff(result.reference, s):.2e}\n"
                          f"({_verdict_text(result.verdict(run, s))})" for s in STRIDES)
        text = f"{label}\nfloat32 in, max abs diff\nfrom the reference:\n{diffs}"
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, wrap=True, transform=ax.transAxes)


def run(image: str | None = None, out: str | Path = "refconv-demo.png", relu: bool = False,
        adapter_names: list[str] | None = None) -> tuple[Path, DemoResult]:
    """Load, compute, draw: what `refconv demo` does."""
    img, name = load_image(image)
    result = compute(img, name, relu, adapter_names)
    return render(result, out), result
