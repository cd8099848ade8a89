"""refconv: a float64 NumPy reference conv2d held against every framework's conv2d.

>>> import numpy as np, refconv
>>> refconv.conv2d(np.ones((1, 3, 3, 1)), np.ones((3, 3, 1, 1)), padding="VALID")[0, :, :, 0]
array([[9.]])
"""

from refconv.check import check  # the function; its module's other names: `from refconv.check import ...`
from refconv.grad import conv2d_grad_bias, conv2d_grad_filter, conv2d_grad_input, conv2d_transpose
from refconv.locally_connected import locally_connected2d
from refconv.params import output_shape, param_count
from refconv.reference import conv2d, conv2d_direct
from refconv.spec import ConvSpec, SpecError

__version__ = "0.1.0"
__all__ = [
    "ConvSpec", "SpecError", "check", "conv2d", "conv2d_direct", "locally_connected2d", "output_shape", "param_count",
    "conv2d_grad_bias", "conv2d_grad_filter", "conv2d_grad_input", "conv2d_transpose", "__version__",
]
