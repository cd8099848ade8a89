"""`refconv check`: the user's arrays through the reference and the engines; exit 0 / 1 / 2; refconv.check()."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import refconv
from refconv.check import case_of
from refconv.cli import main
from refconv.errors import UsageError

WRONG = "wrong_adapter:OddPadBeforeConv"  # tests/wrong_adapter.py: SAME with the odd pixel before
DEVIATIONS = Path(refconv.__file__).parent / "data" / "known_deviations.toml"


def save(folder: Path, **arrays: np.ndarray) -> dict[str, str]:
    paths = {}
    for name, array in arrays.items():
        paths[name] = str(folder / f"{name}.npy")
        np.save(paths[name], array)
    return paths


def arrays(shape_x: tuple[int, ...] = (1, 5, 5, 3), shape_w: tuple[int, ...] = (2, 2, 3, 4),
           dtype: str = "float32") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape_x).astype(dtype)
    w = rng.standard_normal(shape_w).astype(dtype)
    return x, w, rng.standard_normal(shape_w[-1]).astype(dtype)


def test_case_of_reads_nchw_and_oihw_as_the_same_convolution() -> None:
    x, w, b = arrays()  # x (1, 5, 5, 3) NHWC, w (2, 2, 3, 4) HWIO
    spec, (x1, w1, b1) = case_of(x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), b, strides=(2, 1),
                                 layout="NCHW", w_layout="OIHW")
    assert (spec.n, spec.h, spec.w, spec.c_in, spec.c_out, spec.kh, spec.kw) == (1, 5, 5, 3, 4, 2, 2)
    assert spec.strides == (2, 1) and spec.layout == "NCHW" and spec.bias and spec.dtype == "float32"
    np.testing.assert_array_equal(x1, x)
    np.testing.assert_array_equal(w1, w)
    np.testing.assert_array_equal(b1, b)


@pytest.mark.parametrize(("change", "message"), [
    ({"w": np.zeros((2, 2, 5, 4), np.float32)}, "expects 5 input channels"),
    ({"b": np.zeros(3, np.float32)}, "b must have shape (4,)"),
    ({"w": np.zeros((2, 2, 3, 4), np.float16)}, "x is float32 but w is float16"),
    ({"x": np.zeros((5, 5, 3), np.float32)}, "x must be 4-D"),
    ({"x": np.zeros((1, 5, 5, 3), np.int32)}, "x has dtype int32"),
])
def test_arrays_that_do_not_fit_exit_2_with_one_line(tmp_path, capsys, change, message) -> None:
    x, w, b = arrays()
    paths = save(tmp_path, **{"x": x, "w": w, "b": b, **change})
    code = main(["check", "--x", paths["x"], "--w", paths["w"], "--b", paths["b"], "--adapters", "numpy"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("refconv check: error:") and message in err, err


def test_unreadable_files_exit_2_with_one_line(tmp_path, capsys) -> None:
    x, w, _ = arrays()
    paths = save(tmp_path, x=x, w=w)
    (tmp_path / "text.npy").write_text("not an array\n")
    for argv, message in ((["--x", str(tmp_path / "missing.npy"), "--w", paths["w"]], "cannot read x"),
                          (["--x", paths["x"], "--w", str(tmp_path / "text.npy")], "is not a NumPy .npy file")):
        assert main(["check", *argv, "--adapters", "numpy"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


def test_within_rounding_exits_0_and_says_so(tmp_path, capsys) -> None:
    x, w, b = arrays()
    paths = save(tmp_path, x=x, w=w, b=b)
    code = main(["check", "--x", paths["x"], "--w", paths["w"], "--b", paths["b"], "--strides", "2",
                 "--adapters", "numpy"])
    out = capsys.readouterr().out
    assert code == 0, out
    line = next(line for line in out.splitlines() if line.startswith("numpy"))
    assert " pass " in line and "within rounding: the difference is at most" in line


def test_bfloat16_npy_files_are_read_as_bfloat16(tmp_path, capsys) -> None:
    import ml_dtypes

    x, w, _ = arrays()
    paths = save(tmp_path, x=x.astype(ml_dtypes.bfloat16), w=w.astype(ml_dtypes.bfloat16))  # stored as raw |V2
    assert main(["check", "--x", paths["x"], "--w", paths["w"], "--adapters", "numpy"]) == 0
    assert capsys.readouterr().out.startswith("case n1-5x5x3-k2x2x4-s1x1-same-bf16-nobias:")


def test_a_wrong_engine_exits_1_names_the_finding_and_writes_the_run(tmp_path, capsys) -> None:
    # 5x5 input, 2x2 kernel, stride 1, SAME: the padding total is 1 on each axis, odd, where the adapter is wrong.
    x, w, b = arrays()
    paths = save(tmp_path, x=x, w=w, b=b)
    run_dir = tmp_path / "run"
    code = main(["check", "--x", paths["x"], "--w", paths["w"], "--b", paths["b"],
                 "--adapters", f"numpy,{WRONG}", "--out", str(run_dir)])
    out = capsys.readouterr().out
    assert code == 1, out
    wrong = next(line for line in out.splitlines() if line.startswith(WRONG))
    assert " mismatch " in wrong and "beyond rounding: finding" in wrong and "NEW" in wrong
    frame = pd.read_parquet(run_dir / "results.parquet")
    assert dict(zip(frame["adapter"], frame["outcome"], strict=True)) == {"numpy": "pass", WRONG: "mismatch"}
    assert (frame["layer"] == "").all() and (frame["model"] == "").all()
    repro = frame.loc[frame["adapter"] == WRONG, "repro"].iloc[0]
    saved = np.load(run_dir / "repro" / f"{frame['case_id'].iloc[0]}.npz")
    np.testing.assert_array_equal(saved["x"], x)  # the repro carries the user's arrays, not seeded ones
    assert (run_dir / repro).is_file() and (run_dir / "report.html").is_file() and (run_dir / "summary.md").is_file()


def test_python_api_returns_a_dataframe_per_engine() -> None:
    x, w, b = arrays((2, 6, 6, 4), (3, 3, 1, 4))  # depthwise: groups = c_in = 4
    df = refconv.check(x, w, b, strides=2, padding="VALID", groups=4, adapters="numpy")
    assert list(df["adapter"]) == ["numpy"]
    row = df.iloc[0]
    assert row["outcome"] == "pass" and row["case_id"].startswith("n2-6x6x4-k3x3x4-s2x2-valid-f32-g4")
    assert row["verdict"].startswith("within rounding") and row["bound_ratio"] <= row["tolerance_c"]
    with pytest.raises(UsageError, match="expects 8 input channels"):
        refconv.check(x, w, b, groups=8, adapters="numpy")


def _deviation_for(adapter: str, fact: str) -> str:
    """The id of the reviewed entry for `adapter` whose region is written in `fact` (read from the file as it is)."""
    entries = tomllib.loads(DEVIATIONS.read_text())
    return next(name for name, entry in entries.items()
                if adapter in entry["adapter"] and fact in entry.get("when", {}))


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime is not installed")
def test_a_known_deviation_is_named_in_the_verdict(tmp_path, capsys) -> None:
    # 8x8 input, 1x1 kernel, stride 4, SAME: 3 pixels per axis unused (same_slack 3).
    x, w, b = arrays((1, 8, 8, 4), (1, 1, 4, 2))
    paths = save(tmp_path, x=x, w=w, b=b)
    code = main(["check", "--x", paths["x"], "--w", paths["w"], "--b", paths["b"], "--strides", "4",
                 "--adapters", "numpy,onnxruntime"])
    out = capsys.readouterr().out
    assert code == 1, out
    line = next(line for line in out.splitlines() if line.startswith("onnxruntime"))
    assert "beyond rounding: finding" in line and _deviation_for("onnxruntime", "same_slack") in line, line
