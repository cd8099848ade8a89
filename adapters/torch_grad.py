"""The training ops of the `torch` and `torch-nn` adapters (mixins): autograd and the transposed conv.

- grad_input / grad_filter: autograd through the adapter's own forward call (F.conv2d, or the
  nn.Conv2d layer for `torch-nn`), built once in `prepare_*`; the timed call is
  torch.autograd.grad(y, x or weight, dy, retain_graph=True). The gradient with respect to x does not
  depend on x (nor that with respect to w on w), so the other operand is zeros.
- transpose: F.conv_transpose2d / nn.ConvTranspose2d with the padding and output_padding of
  refconv.grad_padding.torch_transpose; where PyTorch's symmetric crop cannot express the forward pads
  the result of padding=0 is cropped (the transposed twin of the forward adapter's F.pad).
The forward HWIO filter is OIHW for F.conv2d and also (in, out / groups, kh, kw) for conv_transpose2d.
Kernels (`isa`): a gradient runs the backward of the backend torch chose for its forward (ATen's
convolution_backward asks select_conv_backend again), so TorchAdapter.isa asks for the forward's backend with the
differentiated operand requiring grad; transpose asks for the transposed backend (MkldnnTranspose or
SlowTranspose2d).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adapters.base import OpsFromPrepared, Prepared, hwio_to_oihw
from refconv import padding
from refconv.grad_padding import torch_transpose
from refconv.spec import ConvSpec


class TorchGradMixin(OpsFromPrepared):
    """grad_input, grad_filter and transpose for TorchAdapter (needs to_tensor, to_numpy, memory_format...)."""

    torch: Any

    def _nchw(self, a: np.ndarray, spec: ConvSpec) -> Any:
        t: Any = self.to_tensor(a)  # type: ignore[attr-defined]
        return t.permute(0, 3, 1, 2).contiguous(memory_format=self.memory_format(spec))  # type: ignore[attr-defined]

    def _weight(self, w: np.ndarray, spec: ConvSpec) -> Any:
        t: Any = self.to_tensor(hwio_to_oihw(w))  # type: ignore[attr-defined]
        return t.contiguous(memory_format=self.memory_format(spec))  # type: ignore[attr-defined]

    def forward_fn(self, spec: ConvSpec, weight: Any) -> Any:
        """x -> the forward convolution (F.pad where asymmetric, then F.conv2d), differentiable."""
        fn = self.torch.nn.functional
        pre, pad = padding.for_torch(spec)

        def forward(x: Any) -> Any:
            xin = fn.pad(x, pre) if pre else x
            return fn.conv2d(xin, weight, None, stride=spec.strides, padding=pad, dilation=spec.dilations,
                             groups=spec.groups)

        return forward

    def _backward(self, y: Any, wrt: Any, tdy: Any) -> Prepared:
        torch = self.torch

        def call() -> Any:
            (g,) = torch.autograd.grad(y, wrt, tdy, retain_graph=True)
            self.synchronize()  # type: ignore[attr-defined]
            return g

        return Prepared(call, lambda g: g)

    def prepare_grad_input(self, dy: np.ndarray, w: np.ndarray, spec: ConvSpec) -> Prepared:
        self.apply()  # type: ignore[attr-defined]
        tw = self._weight(w, spec)
        x0 = self._nchw(np.zeros(spec.input_shape, dtype=w.dtype), spec).requires_grad_(True)
        y = self.forward_fn(spec, tw)(x0)
        p = self._backward(y, x0, self._nchw(dy, spec))
        return Prepared(p.call, lambda g: self.to_numpy(g.permute(0, 2, 3, 1)))  # type: ignore[attr-defined]

    def prepare_grad_filter(self, x: np.ndarray, dy: np.ndarray, spec: ConvSpec) -> Prepared:
        self.apply()  # type: ignore[attr-defined]
        tw0 = self._weight(np.zeros(spec.kernel_shape, dtype=x.dtype), spec).requires_grad_(True)
        y = self.forward_fn(spec, tw0)(self._nchw(x, spec))
        p = self._backward(y, tw0, self._nchw(dy, spec))
        return Prepared(p.call, lambda g: self.to_numpy(g.permute(2, 3, 1, 0)))  # type: ignore[attr-defined]

    def transpose_fn(self, spec: ConvSpec, weight: Any) -> Any:
        """y -> F.conv_transpose2d(y, weight, ...) [cropped], as refconv.grad_padding.torch_transpose says."""
        fn = self.torch.nn.functional
        t = torch_transpose(spec)

        def transpose(y: Any) -> Any:
            out = fn.conv_transpose2d(y, weight, None, stride=spec.strides, padding=t.padding,
                                      output_padding=t.output_padding, groups=spec.groups, dilation=spec.dilations)
            return out if t.crop is None else out[:, :, t.crop[0][0]: t.crop[0][1], t.crop[1][0]: t.crop[1][1]]

        return transpose

    def prepare_transpose(self, y: np.ndarray, w: np.ndarray, spec: ConvSpec) -> Prepared:
        self.apply()  # type: ignore[attr-defined]
        torch = self.torch
        run, ty = self.transpose_fn(spec, self._weight(w, spec)), self._nchw(y, spec)

        def call() -> Any:
            with torch.no_grad():
                out = run(ty)
            self.synchronize()  # type: ignore[attr-defined]
            return out

        return Prepared(call, lambda out: self.to_numpy(out.permute(0, 2, 3, 1)))  # type: ignore[attr-defined]



class TorchNNGradMixin(TorchGradMixin):
    """The layer API: gradients through the nn.Conv2d model of `build` (x, or the layer's weight), and
    nn.ConvTranspose2d."""

    def prepare_grad_input(self, dy: np.ndarray, w: np.ndarray, spec: ConvSpec) -> Prepared:
        self.apply()  # type: ignore[attr-defined]
        model = self.build(w, None, spec)  # type: ignore[attr-defined]
        x0 = self._nchw(np.zeros(spec.input_shape, dtype=w.dtype), spec).requires_grad_(True)
        p = self._backward(model(x0), x0, self._nchw(dy, spec))
        return Prepared(p.call, lambda g: self.to_numpy(g.permute(0, 2, 3, 1)))  # type: ignore[attr-defined]

    def prepare_grad_filter(self, x: np.ndarray, dy: np.ndarray, spec: ConvSpec) -> Prepared:
        self.apply()  # type: ignore[attr-defined]
        model = self.build(np.zeros(spec.kernel_shape, dtype=x.dtype), None, spec)  # type: ignore[attr-defined]
        conv = next(m for m in model if isinstance(m, self.torch.nn.Conv2d))
        p = self._backward(model(self._nchw(x, spec)), conv.weight, self._nchw(dy, spec))
        return Prepared(p.call, lambda g: self.to_numpy(g.permute(2, 3, 1, 0)))  # type: ignore[attr-defined]

    def transpose_fn(self, spec: ConvSpec, weight: Any) -> Any:
        nn, t = self.torch.nn, torch_transpose(spec)
        layer = nn.ConvTranspose2d(
            spec.c_out, spec.c_in, (spec.kh, spec.kw), stride=spec.strides, padding=t.padding,
            output_padding=t.output_padding, groups=spec.groups, bias=False, dilation=spec.dilations,
            padding_mode="zeros", device=weight.device, dtype=weight.dtype,
        )
        with self.torch.no_grad():
            layer.weight.copy_(weight)
        layer = layer.eval().to(memory_format=self.memory_format(spec))  # type: ignore[attr-defined]

        def transpose(y: Any) -> Any:
            out = layer(y)
            return out if t.crop is None else out[:, :, t.crop[0][0]: t.crop[0][1], t.crop[1][0]: t.crop[1][1]]

        return transpose
