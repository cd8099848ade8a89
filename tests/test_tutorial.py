"""The tutorial's single-image API (its padding crash fixed) and the tutorial's demo experiment."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refconv import tutorial
from refconv.errors import RefconvError, SpecError
from refconv.reference import conv2d_direct


def test_kernel_equals_stride_same_has_zero_padding_and_does_not_crash():
    x = np.arange(16.0).reshape(4, 4, 1)  # one 4x4 image, rows 0-3, 4-7, 8-11, 12-15
    k = np.ones((2, 2, 1, 1))
    # SAME, in=4, k=2, s=2: out=2, total=max(1*2+2-4, 0)=0; the tutorial's padded[0:-0] was empty
    out = tutorial.convolution2d(x, k, np.zeros(1), strides=(2, 2), padding="same")
    assert out.shape == (2, 2, 1)
    assert out[:, :, 0].tolist() == [[10.0, 18.0], [42.0, 50.0]]


def test_one_by_one_kernel_same_does_not_crash():
    x = np.arange(12.0).reshape(2, 3, 2)  # 2x3 image, 2 channels
    k = np.array([1.0, 10.0]).reshape(1, 1, 2, 1)  # 1x1: out = ch0 + 10 * ch1; no padding at all
    out = tutorial.convolution2d(x, k, np.array([0.5]), padding="same")
    assert out[:, :, 0].tolist() == [[10.5, 32.5, 54.5], [76.5, 98.5, 120.5]]


def test_one_by_one_kernel_stride2_same():
    x = np.arange(25.0).reshape(5, 5, 1)
    out = tutorial.convolution2d(x, np.ones((1, 1, 1, 1)), np.zeros(1), strides=(2, 2), padding="same")
    # out = ceil(5/2) = 3, total = max(2*2 + 1 - 5, 0) = 0: pixels (0, 2, 4) x (0, 2, 4)
    assert out[:, :, 0].tolist() == [[0.0, 2.0, 4.0], [10.0, 12.0, 14.0], [20.0, 22.0, 24.0]]


def test_same_odd_padding_with_bias_hand_computed():
    x = np.arange(9.0).reshape(3, 3, 1)  # [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    k = np.ones((2, 2, 1, 1))
    # SAME, in=3, k=2, s=1: total=1 -> top 0, bottom 1, left 0, right 1 (zeros after)
    out = tutorial.convolution2d(x, k, np.array([1.0]), padding="same")
    assert out[:, :, 0].tolist() == [[9.0, 13.0, 8.0], [21.0, 25.0, 14.0], [14.0, 16.0, 9.0]]


def test_valid_multichannel_bias_per_output_channel():
    x = np.ones((3, 3, 2))
    k = np.zeros((3, 3, 2, 2))
    k[:, :, 0, 0] = 1.0  # output 0 sums channel 0
    k[:, :, 1, 1] = 2.0  # output 1 doubles channel 1
    out = tutorial.convolution2d(x, k, np.array([0.5, -1.0]), padding="valid")
    assert out.tolist() == [[[9.5, 17.0]]]


def test_kernel_is_not_flipped():
    x = np.arange(9.0).reshape(3, 3, 1)
    k = np.zeros((3, 3, 1, 1))
    k[0, 0] = 1.0  # top-left tap: cross-correlation reads x[r - 1, c - 1]
    out = tutorial.convolution2d(x, k, np.zeros(1), padding="same")
    assert out[:, :, 0].tolist() == [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 3.0, 4.0]]


def test_the_tutorial_slice_was_empty_when_padding_after_is_zero():
    padded = np.zeros((4, 4))
    bottom = 0
    assert padded[0:-bottom].shape == (0, 4)  # why the tutorial crashed; zero_pad must not
    assert tutorial.zero_pad(np.ones((4, 4, 1)), (2, 2), strides=(2, 2)).shape == (4, 4, 1)


def test_zero_pad_puts_the_odd_pixel_after():
    padded = tutorial.zero_pad(np.ones((6, 6, 1)), (3, 3), strides=(2, 2))[:, :, 0]
    # SAME, in=6, k=3, s=2: total 1 -> top 0, bottom 1, left 0, right 1
    assert padded.shape == (7, 7)
    assert padded[:6, :6].sum() == 36.0 and padded[6].sum() == 0.0 and padded[:, 6].sum() == 0.0


def test_relu():
    assert tutorial.relu(np.array([-2.0, 0.0, 3.0])).tolist() == [0.0, 0.0, 3.0]


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 7), w=st.integers(1, 7), c_in=st.integers(1, 3), c_out=st.integers(1, 3),
    kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
    padding=st.sampled_from(["same", "valid", "SAME"]), seed=st.integers(0, 2**16),
)
def test_matches_the_direct_loop(h, w, c_in, c_out, kh, kw, sh, sw, padding, seed):
    rng = np.random.default_rng(seed)
    x, k, b = rng.standard_normal((h, w, c_in)), rng.standard_normal((kh, kw, c_in, c_out)), rng.standard_normal(c_out)
    got = tutorial.convolution2d(x, k, b, strides=(sh, sw), padding=padding)
    want = conv2d_direct(x[None], k, b, strides=(sh, sw), padding=padding.upper())[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: tutorial.convolution2d(np.ones((1, 3, 3, 1)), np.ones((1, 1, 1, 1)), np.zeros(1)), "rank 3"),
        (lambda: tutorial.convolution2d(np.ones((3, 3, 2)), np.ones((1, 1, 1, 1)), np.zeros(1)), "channel mismatch"),
        (lambda: tutorial.convolution2d(np.ones((3, 3, 1)), np.ones((1, 1, 1, 2)), np.zeros(1)), "bias"),
        (lambda: tutorial.convolution2d(np.ones((3, 3, 1)), np.ones((1, 1, 1, 1)), None, padding="full"), "padding"),
        (lambda: tutorial.convolution2d(np.ones((3, 3, 1)), np.ones((1, 1, 1, 1)), None, strides=(0, 1)), "strides"),
        (lambda: tutorial.zero_pad(np.ones((3, 3)), (1, 1)), "rank 3"),
    ],
)
def test_bad_arguments_name_the_problem(call, words):
    with pytest.raises(SpecError, match=words):
        call()


# --- the demo -------------------------------------------------------------------------------

def test_demo_kernel_is_the_tutorial_one():
    from refconv.demo import demo_kernel

    w, b = demo_kernel()
    assert w.shape == (3, 3, 3, 2) and b.tolist() == [1.0, 0.0]
    for c in range(3):
        assert w[:, :, c, 0].tolist() == [[-1.0, -1.0, -1.0], [-1.0, 8.0, -1.0], [-1.0, -1.0, -1.0]]
        assert np.all(w[:, :, c, 1] == 1.0 / 9.0)


def test_edge_detector_on_a_flat_image_gives_the_bias():
    from refconv.demo import demo_kernel

    w, b = demo_kernel()
    out = tutorial.convolution2d(np.full((5, 5, 3), 0.5), w, b, padding="valid")
    # interior of a flat image: 8*0.5 - 8*0.5 = 0 per channel, plus bias 1; blur: 3 channels * 9 * 0.5/9
    assert np.allclose(out[:, :, 0], 1.0) and np.allclose(out[:, :, 1], 1.5)


def test_equalize_adaptive_range_and_order():
    from refconv.demo import equalize_adaptive

    ramp = np.linspace(-3.0, 5.0, 400).reshape(20, 20)
    eq = equalize_adaptive(ramp, tiles=1)
    assert eq.min() >= 0.0 and eq.max() <= 1.0
    assert np.all(np.diff(eq.ravel()) >= 0)  # one tile: a monotone map of a monotone image
    assert np.all(equalize_adaptive(np.full((4, 4), 2.0)) == 0.0)  # a flat image has no contrast to spread
    noisy = equalize_adaptive(np.random.default_rng(0).standard_normal((64, 48)))
    assert noisy.shape == (64, 48) and noisy.min() >= 0.0 and noisy.max() <= 1.0


def _small_image():
    yy, xx = np.mgrid[0:24, 0:20]
    img = np.stack([(xx > 9) * 1.0, (yy > 11) * 0.5, np.full((24, 20), 0.25)], axis=2)  # two edges
    return img


def test_demo_compute_reference_is_the_tutorial_layer_and_numpy_runs_in_a_subprocess():
    from refconv import demo

    img = _small_image()
    result = demo.compute(img, "synthetic", relu=True, adapter_names=["numpy"])
    w, b = demo.demo_kernel()
    x32 = img.astype(np.float32).astype(np.float64)
    for s in demo.STRIDES:
        want = tutorial.relu(tutorial.convolution2d(x32, w.astype(np.float32), b.astype(np.float32),
                                                    strides=(s, s), padding="same"))
        np.testing.assert_allclose(result.reference[s][0], want, rtol=1e-12, atol=1e-12)
    (run,) = result.engines
    assert run.label == "numpy" and not run.error
    assert result.verdict(run, 1).outcome == "pass" and result.verdict(run, 2).outcome == "pass"
    assert run.outputs[2].shape == (1, 12, 10, 2)


def test_demo_render_writes_a_png(tmp_path):
    from refconv import demo

    result = demo.compute(_small_image(), "synthetic", adapter_names=[])
    path = demo.render(result, tmp_path / "demo.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_frameworks_agree_with_the_reference():
    pytest.importorskip("torch", reason="torch is not installed")
    from refconv import demo

    result = demo.compute(_small_image(), "synthetic", adapter_names=["torch"])
    (run,) = result.engines
    assert not run.error, run.error
    for s in demo.STRIDES:
        verdict = result.verdict(run, s)
        assert verdict.outcome == "pass", verdict.message("torch", demo.demo_spec(result.image, s, False))


def test_demo_cli_bad_image_is_one_line_exit_2(tmp_path, capsys):
    from refconv.cli import main

    bogus = tmp_path / "not-an-image.png"
    bogus.write_text("hello")
    assert main(["demo", "--image", str(bogus), "--adapters", "numpy", "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a readable image" in err
    assert main(["demo", "--image", str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "o.png")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_demo_load_image_rejects_nothing_it_can_read(tmp_path):
    import matplotlib.image as mpimg

    from refconv.demo import load_image

    gray = np.linspace(0, 1, 30 * 40).reshape(30, 40)
    mpimg.imsave(tmp_path / "g.png", gray, cmap="gray")
    img, name = load_image(str(tmp_path / "g.png"))
    assert name == "g.png" and img.shape == (30, 40, 3) and 0.0 <= img.min() <= img.max() <= 1.0


def test_errors_are_refconv_errors():
    with pytest.raises(RefconvError):
        tutorial.convolution2d(np.ones((2, 2)), np.ones((1, 1, 1, 1)), None)
