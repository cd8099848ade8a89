"""`refconv audit MODEL`: ONNX, Keras and PyTorch models built on the fly, each layer on the engines.

Two kinds of test: the audit end to end (exit code, rows with `layer`/`model`, the per-layer table), and the
loaders' mapping checked against the framework itself: each layer record, run through refconv's reference
with the record's geometry and weights, must give what the framework's own layer gives.
"""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path
from types import SimpleNamespace

import audit_models
import numpy as np
import pandas as pd
import pytest

import refconv
from refconv import ops
from refconv.audit import model_kind
from refconv.cli import main
from refconv.errors import UsageError
from refconv.models import Layer, keras_padding, onnx_padding, spec_of, torch_padding
from refconv.reference import conv2d

DEVIATIONS = Path(refconv.__file__).parent / "data" / "known_deviations.toml"


def needs(*modules: str) -> pytest.MarkDecorator:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"{', '.join(missing)} not installed")


def deviation_for(adapter: str, fact: str) -> str:
    """The reviewed entry for `adapter` whose region is written in `fact`, read from the file as it is now."""
    entries = tomllib.loads(DEVIATIONS.read_text())
    return next(name for name, entry in entries.items()
                if adapter in entry["adapter"] and fact in entry.get("when", {}))


def reference_of(layer: Layer, x: np.ndarray) -> np.ndarray:
    """refconv's float64 answer for a layer record on x (NHWC; for a transposed conv, the layer's input)."""
    spec = spec_of(layer, seed=0)
    if layer.kind == "transpose":
        expected, _ = ops.reference(spec, (x, layer.weight))
        return expected + (0.0 if layer.bias is None else layer.bias.astype(np.float64))
    return conv2d(x.astype(np.float64), layer.weight.astype(np.float64),
                  None if layer.bias is None else layer.bias.astype(np.float64),
                  spec.strides, spec.padding, spec.dilations, spec.groups)


# --- the framework-free part ---------------------------------------------------------------------


def test_each_framework_padding_maps_onto_refconv_padding() -> None:
    size, kernel, strides, dilations = (5, 6), (2, 3), (1, 2), (1, 1)
    assert onnx_padding("SAME_UPPER", [], size, kernel, strides, dilations) == "SAME"
    assert onnx_padding("VALID", [], size, kernel, strides, dilations) == "VALID"
    assert onnx_padding("NOTSET", [1, 2, 3, 4], size, kernel, strides, dilations) == ((1, 3), (2, 4))  # t, l, b, r
    # SAME_LOWER: TF's SAME totals with the odd pixel first. Rows: 5, k2, s1: total 1 -> (1, 0); cols: 6, k3, s2:
    # out 3, total (3-1)*2 + 3 - 6 = 1 -> (1, 0).
    assert onnx_padding("SAME_LOWER", [], size, kernel, strides, dilations) == ((1, 0), (1, 0))
    assert torch_padding("same") == "SAME" and torch_padding("valid") == "VALID"
    assert torch_padding((2, 1)) == ((2, 2), (1, 1))
    assert keras_padding("same") == "SAME"
    with pytest.raises(refconv.SpecError, match="causal"):
        keras_padding("causal")


def test_models_are_told_apart_and_bad_ones_exit_2(tmp_path, capsys) -> None:
    (tmp_path / "m.onnx").write_bytes(b"")
    assert model_kind(str(tmp_path / "m.onnx")) == "onnx"
    assert model_kind("pkg.nets:resnet18") == "torch"
    with pytest.raises(UsageError, match="does not exist"):
        model_kind(str(tmp_path / "missing.keras"))
    assert main(["audit", "resnet.pt", "--adapters", "numpy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MODEL must be a .onnx file" in err


# --- ONNX ------------------------------------------------------------------------------------------


@needs("onnx", "onnxruntime")
def test_onnx_audit_names_the_planted_layer_and_its_known_deviation(tmp_path, capsys) -> None:
    model = audit_models.onnx_model(tmp_path / "net.onnx", batch="N")  # a symbolic batch: --batch sets it
    run_dir = tmp_path / "run"
    code = main(["audit", str(model), "--adapters", "numpy,onnxruntime", "--batch", "2", "--out", str(run_dir),
                 "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1, out
    deviation = deviation_for("onnxruntime", "same_slack")
    frame = pd.read_parquet(run_dir / "results.parquet").set_index(["layer", "adapter"])
    assert set(frame.index.get_level_values("layer")) == {"stem", audit_models.PLANTED, "up"}
    assert (frame["model"] == str(model)).all() and (frame["n"] == 2).all()
    planted = frame.loc[audit_models.PLANTED]
    assert planted.loc["onnxruntime", "outcome"] == "mismatch"
    assert planted.loc["onnxruntime", "known_deviation"] == deviation
    assert planted.loc["numpy", "outcome"] == "pass"
    assert (frame.loc["stem", "outcome"] == "pass").all()
    # the report opens with the per-layer table, which names the layer and the deviation
    summary = (run_dir / "summary.md").read_text()
    assert summary.index("## Layers") < summary.index("## Outcomes per adapter")
    planted_line = next(line for line in summary.splitlines() if line.startswith(f"| {audit_models.PLANTED} "))
    assert f"onnxruntime: mismatch ({deviation})" in planted_line and "repro/" in planted_line
    assert audit_models.PLANTED in (run_dir / "report.html").read_text()
    assert f"onnxruntime: mismatch ({deviation})" in out


@needs("onnx")
@pytest.mark.parametrize("build", [audit_models.onnx_model, audit_models.onnx_edge_model])
def test_onnx_layer_records_compute_what_onnx_computes(tmp_path, build) -> None:
    import onnx
    from onnx.reference import ReferenceEvaluator

    from refconv.models import onnx as loader

    path = build(tmp_path / "net.onnx")
    layers = loader.layers(None, str(path))
    graph = onnx.load(path).graph
    convs = [node for node in graph.node if node.op_type in ("Conv", "ConvTranspose")]
    assert [layer.name for layer in layers] == [node.name for node in convs]
    assert all(layer.shape_known and not layer.skip for layer in layers)
    x = np.random.default_rng(0).standard_normal([d.dim_value for d in graph.input[0].type.tensor_type.shape.dim])
    names = [name for node in convs for name in (node.input[0], node.output[0])]
    values = ReferenceEvaluator(onnx.load(path)).run(names, {"x": x.astype(np.float32)})
    for i, layer in enumerate(layers):
        given, wanted = (v.transpose(0, 2, 3, 1) for v in values[2 * i: 2 * i + 2])
        np.testing.assert_allclose(reference_of(layer, given), wanted, rtol=1e-4, atol=1e-4, err_msg=layer.name)
    assert all(layer.weight is None for layer in loader.layers(None, str(path), random_weights=True))


def test_the_planted_onnx_layer_is_read_as_same_stride_4(tmp_path) -> None:
    pytest.importorskip("onnx", reason="onnx is not installed")
    from refconv.models import onnx as loader

    planted = loader.layers(None, str(audit_models.onnx_model(tmp_path / "net.onnx")))[1]
    assert (planted.name, planted.padding, planted.strides, planted.h) == (audit_models.PLANTED, "SAME", (4, 4), 8)


# --- PyTorch ---------------------------------------------------------------------------------------


@needs("torch")
def test_torch_factory_audit_runs_every_conv_module(tmp_path, capsys) -> None:
    run_dir = tmp_path / "run"
    # one engine, whose worker also reads the model: the cheapest end-to-end run
    code = main(["audit", "audit_models:small_net", "--input-shape", "2,3,8,8", "--adapters", "torch",
                 "--out", str(run_dir), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    frame = pd.read_parquet(run_dir / "results.parquet")
    assert list(dict.fromkeys(frame["layer"])) == ["0", "2", "4", "5"]  # module names, in forward order
    assert (frame["model"] == "audit_models:small_net").all()
    convs = frame[frame["layer"] != "5"]
    assert (convs["outcome"] == "pass").all() and len(convs) == 3
    assert convs.loc[convs["layer"] == "2", "groups"].iloc[0] == 8  # the depthwise conv
    transposed = frame[frame["layer"] == "5"].set_index("adapter")
    assert transposed["case_id"].iloc[0].endswith("-transpose")
    assert transposed.loc["torch", "outcome"] == "pass"
    assert "every engine is within rounding" in out


@needs("torch")
def test_torch_layer_records_compute_what_the_modules_compute() -> None:
    import torch

    from refconv.models import torch as loader

    model = audit_models.small_net().eval()
    modules = dict(model.named_modules())
    layers = loader.layers(SimpleNamespace(torch=torch), "audit_models:small_net", None, [2, 3, 8, 8])
    rng = np.random.default_rng(0)
    for layer in layers:
        shape = (layer.n, layer.out_h, layer.out_w, layer.c_out) if layer.kind == "transpose" else \
            (layer.n, layer.h, layer.w, layer.c_in)
        x = rng.standard_normal(shape).astype(np.float32)
        with torch.no_grad():
            wanted = modules[layer.name](torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(reference_of(layer, x), wanted, rtol=1e-4, atol=1e-4, err_msg=layer.name)


# --- Keras -----------------------------------------------------------------------------------------


@pytest.mark.slow  # TensorFlow is imported here and in the keras worker: about 20 s on a 2-core machine
@needs("keras", "tensorflow")
def test_keras_audit_and_its_layer_records(tmp_path, capsys) -> None:
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    from refconv.models import keras as loader

    path = audit_models.keras_model(tmp_path / "net.keras")
    run_dir = tmp_path / "run"
    code = main(["audit", str(path), "--adapters", "numpy", "--out", str(run_dir), "--no-progress"])
    assert code == 0, capsys.readouterr().out
    frame = pd.read_parquet(run_dir / "results.parquet")
    assert list(frame["layer"]) == ["conv_a", "dw_b", "pw_c", "up_d"]
    assert frame["outcome"].tolist()[:3] == ["pass"] * 3
    layers = loader.layers(SimpleNamespace(keras=keras), str(path))
    model = keras.saving.load_model(path)
    rng = np.random.default_rng(0)
    for layer in layers:
        shape = (layer.n, layer.out_h, layer.out_w, layer.c_out) if layer.kind == "transpose" else \
            (layer.n, layer.h, layer.w, layer.c_in)
        x = rng.standard_normal(shape).astype(np.float32)
        wanted = keras.ops.convert_to_numpy(model.get_layer(layer.name)(x))
        np.testing.assert_allclose(reference_of(layer, x), wanted, rtol=1e-4, atol=1e-4, err_msg=layer.name)
