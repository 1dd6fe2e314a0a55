"""dwc: depthwise 2-D convolution compiled by Apache TVM into fast native kernels.

    >>> import numpy as np, dwc_compiler as dwc
    >>> x = np.random.rand(1, 56, 56, 144).astype(np.float32)
    >>> w = np.random.rand(3, 3, 144, 1).astype(np.float32)
    >>> y = dwc.depthwise_conv2d(x, w, strides=[1, 1, 1, 1], padding="SAME")
    >>> p = np.random.rand(1, 1, 144, 24).astype(np.float32)
    >>> z = dwc.separable_conv2d(x, w, p, strides=1, padding="SAME", depthwise_activation="relu6")

TVM is imported only when something is compiled or loaded.
"""

from __future__ import annotations

from .threads import configure_default_threads

configure_default_threads()  # before anything imports TVM: see threads.py

from ._version import __version__  # noqa: E402
from .api import clear_kernel_cache, depthwise_conv2d, depthwise_kernel, separable_conv2d, separable_kernel
from .build import build
from .errors import (BuildError, CorruptRecordError, DwcError, IncompatibleModuleError,
                     InvalidArgumentError, InvalidSpecError, MissingToolError, UnknownTargetError)
from .ops.depthwise import FILTER_FORMATS, DepthwiseSpec  # noqa: E402
from .ops.epilogue import ACTIVATIONS  # noqa: E402
from .ops.separable import SeparableSpec  # noqa: E402
from .runtime import Kernel, load  # noqa: E402
from .runtime.arrays import empty_aligned  # noqa: E402
from .threads import get_num_threads, num_threads, set_num_threads  # noqa: E402

__all__ = [
    "__version__", "depthwise_conv2d", "separable_conv2d", "depthwise_kernel", "separable_kernel", "SeparableSpec", "Kernel", "empty_aligned", "FILTER_FORMATS", "ACTIVATIONS", "set_num_threads", "get_num_threads", "num_threads", "clear_kernel_cache", "build", "load", "DepthwiseSpec",
    "DwcError", "InvalidSpecError", "InvalidArgumentError", "UnknownTargetError",
    "IncompatibleModuleError", "BuildError", "MissingToolError", "CorruptRecordError",
]
