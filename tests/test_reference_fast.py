"""The chunked fast path against the literal loop: every feature, chunk boundaries, float32, empty outputs.

The direct loop (conv2d_direct) is the oracle; the fast path sums in another order, so agreement is
checked against the rounding bound K * eps * (|x| conv |w| + |b|), the bound computed by the direct loop too.
No timings here: speed lives in benchmarks/.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import tracemalloc
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refconv.blas_threads as blas_threads
import refconv.reference as reference
from refconv.reference import _check, abs_bound, conv2d, conv2d_direct, conv2d_fast, for_spec
from refconv.spec import ConvSpec

MAX_SIDE = 9  # spatial size cap: the direct loop is slow
MAX_CHANNELS = 3  # per group


@st.composite
def conv_args(draw: Any) -> dict[str, Any]:
    """A small conv2d call: strides, dilations, groups (depthwise included), SAME/VALID/explicit padding."""
    groups = draw(st.integers(1, 3), label="groups")
    cg, og = draw(st.integers(1, MAX_CHANNELS), label="c_in/g"), draw(st.integers(1, MAX_CHANNELS), label="c_out/g")
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, MAX_SIDE)), draw(st.integers(1, MAX_SIDE))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    padding = draw(st.one_of(st.sampled_from(["SAME", "VALID"]),
                             st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)),
                                       st.tuples(st.integers(0, 3), st.integers(0, 3)))), label="padding")
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    return dict(
        x=rng.standard_normal((n, h, w, groups * cg)), w=rng.standard_normal((kh, kw, cg, groups * og)),
        b=rng.standard_normal(groups * og) if draw(st.booleans(), label="bias") else None,
        strides=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        dilations=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        padding=padding, groups=groups, activation=draw(st.sampled_from([None, "relu"]), label="activation"),
    )


def assert_close_to_direct(args: dict[str, Any], got: np.ndarray, eps: float = float(np.finfo(np.float64).eps)) -> None:
    """|fast - direct| <= K * eps * (|x| conv |w| + |b|), K the reduction length (plus one for the bias)."""
    expected = conv2d_direct(**args)
    assert got.shape == expected.shape
    kh, kw, cg, _ = np.shape(args["w"])
    bound = conv2d_direct(np.abs(args["x"]), np.abs(args["w"]), None if args["b"] is None else np.abs(args["b"]),
                          args["strides"], args["padding"], args["dilations"], args["groups"])
    tol = (kh * kw * cg + 1) * eps * bound
    assert np.all(np.abs(got.astype(np.float64) - expected) <= tol)


@settings(max_examples=150, deadline=None)
@given(conv_args())
def test_fast_matches_direct(args: dict[str, Any]) -> None:
    got = conv2d(**args)
    assert got.dtype == np.float64
    assert_close_to_direct(args, got)


def test_one_row_chunks_agree_for_every_group_shape(monkeypatch: Any) -> None:
    """The chunk loop with one output row per chunk, for plain, grouped and depthwise kernels."""
    monkeypatch.setattr(reference, "_CHUNK_BYTES", 1)
    monkeypatch.setattr(reference, "_MIN_CHUNK_PIXELS", 1)
    rng = np.random.default_rng(5)
    for groups, cg, og in [(1, 4, 5), (2, 2, 3), (4, 1, 1)]:
        args: dict[str, Any] = dict(x=rng.standard_normal((3, 9, 7, groups * cg)),
                                    w=rng.standard_normal((3, 3, cg, groups * og)), b=rng.standard_normal(groups * og),
                                    strides=1, padding="SAME", dilations=1, groups=groups, activation=None)
        assert_close_to_direct(args, conv2d(**args))


def test_concurrent_calls_agree(monkeypatch: Any) -> None:
    """The runner runs cases in threads: overlapping calls share no state and each gets the right answer."""
    monkeypatch.setattr(reference, "_CHUNK_BYTES", 1)
    monkeypatch.setattr(reference, "_MIN_CHUNK_PIXELS", 1)
    rng = np.random.default_rng(9)
    args: dict[str, Any] = dict(x=rng.standard_normal((2, 12, 9, 4)), w=rng.standard_normal((3, 3, 4, 5)),
                                b=rng.standard_normal(5), strides=1, padding="SAME", dilations=1, groups=1,
                                activation="relu")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: conv2d(**args), range(12)))
    for got in results:
        assert_close_to_direct(args, got)


# (chunk bytes, min pixels): one output row per chunk; a few rows; several images per chunk
CHUNKINGS = [(1, 1), (2_000, 1), (20_000, 1)]


@pytest.mark.parametrize(("chunk_bytes", "min_pixels"), CHUNKINGS, ids=["row", "rows", "images"])
@settings(max_examples=40, deadline=None)
@given(args=conv_args())
def test_fast_matches_direct_across_chunk_boundaries(chunk_bytes: int, min_pixels: int, args: dict[str, Any]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reference, "_CHUNK_BYTES", chunk_bytes)
        mp.setattr(reference, "_MIN_CHUNK_PIXELS", min_pixels)
        got = conv2d(**args)
    assert_close_to_direct(args, got)


def test_chunkings_split_as_intended() -> None:
    """The settings above really produce single-row, multi-row and multi-image chunks."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reference, "_MIN_CHUNK_PIXELS", 1)
        shapes = []
        for chunk_bytes, _ in CHUNKINGS:
            mp.setattr(reference, "_CHUNK_BYTES", chunk_bytes)
            shapes.append(reference._chunk_shape(9, 9, row_bytes=3 * 3 * 1 * 8))  # 9x9 output, 3x3 kernel, 1 channel
    assert shapes == [(1, 1), (1, 3), (3, 9)]  # (images, output rows) per chunk


@pytest.mark.parametrize("groups, cg, og", [(1, 5, 7), (4, 3, 2), (6, 1, 1), (6, 1, 3), (1, 1, 4)],
                         ids=["dense", "grouped", "depthwise", "depthwise_multiplier", "single_input_channel"])
@pytest.mark.parametrize("chunk_bytes", [1, 3000, 2 << 20], ids=["row_chunks", "few_row_chunks", "default"])
def test_each_path_at_moderate_size(groups: int, cg: int, og: int, chunk_bytes: int, monkeypatch: Any) -> None:
    monkeypatch.setattr(reference, "_CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(reference, "_MIN_CHUNK_PIXELS", 1)
    rng = np.random.default_rng(groups * 100 + cg * 10 + og)
    args: dict[str, Any] = dict(
        x=rng.standard_normal((3, 11, 10, groups * cg)), w=rng.standard_normal((3, 2, cg, groups * og)),
        b=rng.standard_normal(groups * og), strides=(2, 1), padding="SAME", dilations=(1, 2), groups=groups,
        activation="relu",
    )
    assert_close_to_direct(args, conv2d(**args))


@pytest.mark.parametrize("padding", ["VALID", ((0, 0), (0, 0)), ((1, 0), (0, 2))])
def test_one_by_one_kernel(padding: Any) -> None:
    rng = np.random.default_rng(3)
    args: dict[str, Any] = dict(x=rng.standard_normal((2, 5, 4, 6)), w=rng.standard_normal((1, 1, 6, 3)), b=None,
                                strides=1, padding=padding, dilations=1, groups=1, activation=None)
    assert_close_to_direct(args, conv2d(**args))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("groups, cg", [(1, 4), (2, 3), (5, 1)], ids=["dense", "grouped", "depthwise"])
def test_fast_path_keeps_the_dtype_it_is_given(dtype: Any, groups: int, cg: int) -> None:
    """adapters/numpy_ref.py calls conv2d_fast with float32 arrays and expects float32 accumulation."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 7, 6, groups * cg)).astype(dtype)  # (n, h, w, c_in)
    w = rng.standard_normal((3, 3, cg, groups * 2)).astype(dtype)  # (kh, kw, c_in/g, c_out)
    b = rng.standard_normal(groups * 2).astype(dtype)
    g = _check(x, w, b, 2, "SAME", 1, groups, None)
    got = conv2d_fast(x, w, b, g)
    assert got.dtype == dtype
    args: dict[str, Any] = dict(x=x.astype(np.float64), w=w.astype(np.float64), b=b.astype(np.float64), strides=2,
                                padding="SAME", dilations=1, groups=groups, activation=None)
    assert_close_to_direct(args, got, eps=float(np.finfo(dtype).eps))


def test_float32_path_really_rounds_in_float32() -> None:
    """Summing 1 + 1e-8 in float32 loses the 1e-8: the path must not silently widen to float64."""
    x = np.array([1.0, 1e-8], dtype=np.float32).reshape(1, 1, 1, 2)
    w = np.ones((1, 1, 2, 1), dtype=np.float32)
    g = _check(x, w, None, 1, "VALID", 1, 1, None)
    assert conv2d_fast(x, w, None, g)[0, 0, 0, 0] == np.float32(1.0)
    assert conv2d_fast(x.astype(np.float64), w.astype(np.float64), None, g)[0, 0, 0, 0] == 1.0 + 1e-8


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs, out_shape",
    [
        ((2, 2, 5, 3), (3, 3, 3, 4), dict(padding="VALID"), (2, 0, 3, 4)),  # input shorter than the kernel
        ((1, 4, 4, 2), (2, 2, 1, 2), dict(padding="VALID", dilations=5, groups=2), (1, 0, 0, 2)),  # dilated past it
        ((0, 4, 4, 2), (3, 3, 2, 4), dict(padding="SAME"), (0, 4, 4, 4)),  # no images
        ((1, 4, 4, 2), (3, 3, 2, 0), dict(padding="SAME"), (1, 4, 4, 0)),  # no output channels
    ],
    ids=["short_input", "dilated_past_input", "empty_batch", "no_output_channels"],
)
def test_empty_outputs(x_shape: Any, w_shape: Any, kwargs: Any, out_shape: Any) -> None:
    x, w = np.ones(x_shape), np.ones(w_shape)
    for conv in (conv2d, conv2d_direct):
        out = conv(x, w, **kwargs)
        assert out.shape == out_shape and out.dtype == np.float64


def test_zero_input_channels_give_the_bias() -> None:
    x, w, b = np.ones((1, 3, 3, 0)), np.ones((2, 2, 0, 2)), np.array([1.5, -2.0])
    out = conv2d(x, w, b, padding="SAME", activation="relu")
    assert out.shape == (1, 3, 3, 2)
    assert np.all(out[..., 0] == 1.5) and np.all(out[..., 1] == 0.0)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("groups, cg", [(1, 3), (3, 1)], ids=["im2col", "windows"])
def test_inf_weight_meets_padding_zero_as_in_the_direct_loop(groups: int, cg: int) -> None:
    """0 * inf is NaN: padded zeros take part in the sum, on every path."""
    x = np.ones((1, 3, 3, groups * cg))
    w = np.ones((3, 3, cg, groups))
    w[0, 0] = np.inf  # top-left tap meets padding in the first output row and column
    fast, direct = conv2d(x, w, padding="SAME", groups=groups), conv2d_direct(x, w, padding="SAME", groups=groups)
    assert np.isnan(fast).any()
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(direct))
    np.testing.assert_array_equal(fast[~np.isnan(fast)], direct[~np.isnan(direct)])


@pytest.mark.parametrize("padding", ["VALID", "SAME"])  # VALID 1x1 reads x through a view, SAME through a copy
@pytest.mark.parametrize("k, groups", [(1, 1), (3, 1), (3, 4)])
def test_absolute_convolves_magnitudes_and_leaves_inputs_alone(padding: str, k: int, groups: int) -> None:
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 6, 5, 4))  # (n, h, w, c_in)
    w = rng.standard_normal((k, k, 4 // groups, 4))
    b = rng.standard_normal(4)
    x0, w0, b0 = x.copy(), w.copy(), b.copy()
    g = _check(x, w, b, 1, padding, 1, groups, None)
    got = conv2d_fast(x, w, b, g, absolute=True)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)
    np.testing.assert_array_equal(b, b0)
    expected = conv2d_direct(np.abs(x), np.abs(w), np.abs(b), 1, padding, 1, groups)
    assert np.all(np.abs(got - expected) <= (k * k * 4 + 1) * np.finfo(np.float64).eps * expected)
    np.testing.assert_allclose(abs_bound(x, w, b, 1, padding, 1, groups), expected, rtol=1e-13)


def test_for_spec_costs_two_fast_convolutions(monkeypatch: Any) -> None:
    calls = []
    real = reference.conv2d_fast

    def counting(*args: Any, **kwargs: Any) -> np.ndarray:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(reference, "conv2d_fast", counting)
    spec = ConvSpec(n=1, h=6, w=6, c_in=2, c_out=3, kh=3, kw=3)
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal(spec.input_shape), rng.standard_normal(spec.kernel_shape), rng.standard_normal(3)
    expected, bound = for_spec(spec, x, w, b)
    assert len(calls) == 2
    assert expected.shape == bound.shape == (1, 6, 6, 3)


def test_working_memory_is_bounded_by_the_chunk_not_the_input(monkeypatch: Any) -> None:
    """Peak allocation beyond the output stays near the chunk size for an input 20x larger."""
    monkeypatch.setattr(reference, "_CHUNK_BYTES", 256 << 10)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 96, 96, 8))  # 2.4 MiB
    w = rng.standard_normal((3, 3, 8, 8))
    tracemalloc.start()
    try:
        out = conv2d(x, w, padding="SAME")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak - out.nbytes < 4 * (256 << 10), f"working memory {peak - out.nbytes} bytes"


# --- the chunk threads (refconv.blas_threads): same answer on any thread count, BLAS left as found -----


def _many_chunks(monkeypatch: Any) -> dict[str, Any]:
    """A call cut into 16 one-row chunks, with padding on every side, bias and ReLU."""
    monkeypatch.setattr(reference, "_CHUNK_BYTES", 1)
    monkeypatch.setattr(reference, "_MIN_CHUNK_PIXELS", 1)
    rng = np.random.default_rng(11)
    return dict(x=rng.standard_normal((2, 8, 9, 4)), w=rng.standard_normal((3, 3, 4, 6)), b=rng.standard_normal(6),
                strides=1, padding="SAME", dilations=1, groups=1, activation="relu")


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_result_does_not_depend_on_the_thread_count(threads: int, monkeypatch: Any) -> None:
    """Each chunk is one single-threaded GEMM whichever thread takes it: bit-identical results."""
    args = _many_chunks(monkeypatch)
    blas = blas_threads._blas()
    if blas is None:
        pytest.skip("no OpenBLAS found to steer: chunks always run in the calling thread")
    monkeypatch.setattr(blas, "set", lambda n: None)
    monkeypatch.setattr(blas_threads, "_cpus", lambda: 4)
    monkeypatch.setattr(blas, "get", lambda: 1)
    serial = conv2d(**args)
    monkeypatch.setattr(blas, "get", lambda: threads)  # BLAS's count is the threads chunks use
    used: set[str] = set()
    real = reference._Im2col.__call__

    def recording(self: Any, *a: Any) -> None:
        used.add(threading.current_thread().name)
        real(self, *a)

    monkeypatch.setattr(reference._Im2col, "__call__", recording)
    got = conv2d(**args)
    np.testing.assert_array_equal(got, serial)
    assert 1 <= len(used) <= threads
    assert_close_to_direct(args, got)


def test_blas_threads_restored_after_calls_errors_and_overlaps(monkeypatch: Any) -> None:
    blas = blas_threads._blas()
    if blas is None:
        pytest.skip("no OpenBLAS found to steer")
    before = blas.get()
    args = _many_chunks(monkeypatch)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: conv2d(**args), range(8)))
    assert blas.get() == before

    def failing(self: Any, *a: Any) -> None:
        raise RuntimeError("chunk failed")

    monkeypatch.setattr(reference._Im2col, "__call__", failing)
    with pytest.raises(RuntimeError, match="chunk failed"):
        conv2d(**args)
    assert blas.get() == before


def test_nan_inputs_warn_in_no_chunk_thread(monkeypatch: Any) -> None:
    """for_spec's errstate reaches the helper threads (NaN and Inf inputs are cases, not accidents)."""
    args = _many_chunks(monkeypatch)
    x = args["x"].copy()
    x[0, 0, 0, 0], x[1, 3, 3, 1] = np.nan, np.inf
    spec = ConvSpec(n=2, h=8, w=9, c_in=4, c_out=6, kh=3, kw=3, activation="relu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected, bound = for_spec(spec, x, args["w"], args["b"])
    assert np.isnan(expected).any() and np.isinf(bound).any()


def test_workspace_is_kept_aligned_and_touched_once() -> None:
    first = blas_threads.workspace(10_000, keep_bytes=1 << 20)
    again = blas_threads.workspace(5_000, keep_bytes=1 << 20)
    assert first.ctypes.data % 64 == 0 and again.ctypes.data == first.ctypes.data  # reused: no new pages to fault
    big = blas_threads.workspace(2 << 20, keep_bytes=1 << 20)  # over the keep size: a fresh one, not kept
    assert big.ctypes.data % 64 == 0
    assert blas_threads.workspace(100, keep_bytes=1 << 20).ctypes.data == first.ctypes.data


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("offset", [-4, -1, 0, 2])
def test_inside_matches_counting(stride: int, offset: int) -> None:
    """_inside: the outputs whose input index o * stride + offset falls inside a 7-pixel axis, by brute force."""
    for first, count in [(0, 5), (2, 3), (6, 4)]:
        inside = [o - first for o in range(first, first + count) if 0 <= o * stride + offset < 7]
        lo, hi = reference._inside(first, count, stride, offset, 7)
        assert list(range(lo, hi)) == inside


def _conv_in_child(queue: Any) -> None:
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 12, 12, 3)), rng.standard_normal((3, 3, 3, 4))
    reference._CHUNK_BYTES, reference._MIN_CHUNK_PIXELS = 1, 1  # 24 chunks: helpers are asked for
    queue.put(float(np.abs(conv2d(x, w) - conv2d_direct(x, w)).max()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_runs_chunks_without_the_parents_pool(monkeypatch: Any) -> None:
    """Pool threads do not survive fork: a child that inherited a started pool must not wait on it."""
    blas = blas_threads._blas()
    if blas is None or blas_threads._cpus() < 2:
        pytest.skip("no OpenBLAS found to steer, or one CPU: no pool to inherit")
    monkeypatch.setattr(blas, "get", lambda: 2)  # here and in the child: one helper thread
    conv2d(**_many_chunks(monkeypatch))  # start the pool here first
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_conv_in_child, args=(queue,))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung running chunks")
    assert queue.get(timeout=5) < 1e-12
