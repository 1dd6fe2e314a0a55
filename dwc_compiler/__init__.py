"""dwc: depthwise 2-D convolution compiled by Apache TVM into fast native kernels.

    >>> import numpy as np, dwc_compiler as dwc
    >>> x = np.random.rand(1, 56, 56, 144).astype(np.float32)
    >>> w = np.random.rand(3, 3, 144, 1).astype(np.float32)
    >>> y = dwc.depthwise_conv2d(x, w, strides=[1, 1, 1, 1], padding="SAME")

TVM is imported only when something is compiled or loaded.
"""

from __future__ import annotations

from ._version import __version__
from .api import clear_kernel_cache, depthwise_conv2d
from .build import build
from .errors import (BuildError, CorruptRecordError, DwcError, IncompatibleModuleError,
                     InvalidArgumentError, InvalidSpecError, MissingToolError, UnknownTargetError)
from .manifest import load_kernel as load
from .spec import DepthwiseSpec

__all__ = [
    "__version__", "depthwise_conv2d", "clear_kernel_cache", "build", "load", "DepthwiseSpec",
    "DwcError", "InvalidSpecError", "InvalidArgumentError", "UnknownTargetError",
    "IncompatibleModuleError", "BuildError", "MissingToolError", "CorruptRecordError",
]
