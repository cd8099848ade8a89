"""Small models built on the fly for `refconv audit` tests (nothing is downloaded).

The PyTorch factories are named `audit_models:<function>` on the command line, so this module must be
importable in the torch worker: the tests put tests/ on the path, and spawned workers inherit it.
Frameworks are imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# The planted layer: SAME_UPPER, 1x1 kernel, stride 4 on an 8x8 input leaves 8 - 4 - 1 = 3 pixels unused
# (same_slack 3), the region of known deviation onnxruntime_same_negative_pad_shifts_windows.
PLANTED = "proj_same_stride4"


def onnx_model(path: Path, batch: int | str = 1) -> Path:
    """Conv 3x3 pads 1 (3->4), then the planted SAME_UPPER 1x1 stride 4 (4->2), then a ConvTranspose 2x2 s2."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    weights = {
        "w1": rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "b1": rng.standard_normal(4).astype(np.float32),
        "w2": rng.standard_normal((2, 4, 1, 1)).astype(np.float32), "b2": rng.standard_normal(2).astype(np.float32),
        "w3": rng.standard_normal((2, 3, 2, 2)).astype(np.float32),  # ConvTranspose: (c_in, c_out, kh, kw)
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h1"], name="stem", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["h2"], name=PLANTED, kernel_shape=[1, 1], strides=[4, 4],
                         auto_pad="SAME_UPPER"),
        helper.make_node("ConvTranspose", ["h2", "w3"], ["y"], name="up", kernel_shape=[2, 2], strides=[2, 2]),
    ]
    graph = helper.make_graph(
        nodes, "audit_test", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3, 4, 4])],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def onnx_edge_model(path: Path) -> Path:
    """The conventions a loader can get wrong: SAME_LOWER with an odd total, groups with dilation and
    asymmetric pads, a ConvTranspose with asymmetric pads and output_padding (onnx.reference's ConvTranspose
    cannot take groups, so the grouped transposed conv is the PyTorch model's)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(8)
    weights = {
        "w1": rng.standard_normal((4, 2, 2, 2)).astype(np.float32),  # 2->4, SAME_LOWER, stride 2 on 7x7
        "w2": rng.standard_normal((4, 2, 3, 2)).astype(np.float32), "b2": rng.standard_normal(4).astype(np.float32),
        "w3": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),  # ConvTranspose 4->3
        "b3": rng.standard_normal(3).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["h1"], name="same_lower", kernel_shape=[2, 2], strides=[2, 2],
                         auto_pad="SAME_LOWER"),
        helper.make_node("Conv", ["h1", "w2", "b2"], ["h2"], name="grouped_dilated", kernel_shape=[3, 2],
                         group=2, dilations=[2, 1], pads=[2, 0, 1, 1]),
        helper.make_node("ConvTranspose", ["h2", "w3", "b3"], ["y"], name="up_padded", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 0, 0, 1], output_padding=[1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "audit_edges", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 7, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def keras_model(path: Path) -> Path:
    """Conv2D 3x3 same, DepthwiseConv2D stride 2, Conv2D 1x1, Conv2DTranspose 2x2 s2; saved as .keras."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input(shape=(8, 8, 3)),
        keras.layers.Conv2D(4, 3, padding="same", name="conv_a"),
        keras.layers.DepthwiseConv2D(3, strides=2, padding="same", name="dw_b"),
        keras.layers.Conv2D(6, 1, name="pw_c"),
        keras.layers.Conv2DTranspose(2, 2, strides=2, name="up_d"),
    ])
    model.save(path)
    return path


def small_net() -> Any:
    """nn.Sequential: conv 3x3, depthwise 3x3 stride 2, 1x1 projection, grouped transposed conv 2x2 stride 2."""
    import torch
    from torch import nn

    torch.manual_seed(5)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.ReLU(),
        nn.Conv2d(8, 16, 1, bias=False),
        nn.ConvTranspose2d(16, 4, 2, stride=2, groups=2),
    )


def resnet_like() -> Any:
    """A small ResNet: stem 3x3 s2, two stages of basic blocks (the second strided, with a 1x1 projection),
    a depthwise-separable block, random weights (seeded)."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self, c_in: int, c_out: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
            self.proj = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if stride != 1 or c_in != c_out else None

        def forward(self, x: Any) -> Any:
            shortcut = x if self.proj is None else self.proj(x)
            return torch.relu(self.conv2(torch.relu(self.conv1(x))) + shortcut)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
            self.layer1 = Block(16, 16, 1)
            self.layer2 = Block(16, 32, 2)
            self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
            self.pw = nn.Conv2d(32, 64, 1)
            self.head = nn.Linear(64, 10)

        def forward(self, x: Any) -> Any:
            x = self.layer2(self.layer1(torch.relu(self.stem(x))))
            x = torch.relu(self.pw(self.dw(x)))
            return self.head(x.mean(dim=(2, 3)))

    return Net().eval()
