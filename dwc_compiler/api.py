"""The TF-compatible entry point, ``depthwise_conv2d``, with its per-process kernel cache."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .errors import InvalidArgumentError
from .spec import DepthwiseSpec, canonical_dtype

_kernels: dict[tuple, Any] = {}
_kernels_lock = threading.Lock()


def _hashable(value: Any) -> Any:
    """`value` as a hashable key part: lists become tuples (the common cases fast)."""
    kind = type(value)
    if kind is str or kind is int or value is None:
        return value
    if kind is list or kind is tuple:
        return tuple(v if type(v) is int else _hashable(v) for v in value)
    if isinstance(value, np.ndarray):
        return _hashable(value.tolist())
    return value


def _array_of(value: Any, parameter: str) -> Any:
    if isinstance(value, np.ndarray) or hasattr(value, "__dlpack__"):
        return value
    try:
        return np.asarray(value)
    except Exception as exc:
        raise InvalidArgumentError(f"{parameter}: expected an array, got {type(value).__name__}") from exc


def depthwise_conv2d(input: Any, filter: Any, strides: Any, padding: Any,
                     data_format: str | None = "NHWC", dilations: Any = None,
                     target: str = "host") -> np.ndarray:
    """``tf.nn.depthwise_conv2d``, compiled by dwc: the same arguments, the same result.

    Args:
        input: 4-D array in `data_format` (NumPy, or anything speaking DLPack on the CPU).
        filter: ``[filter_height, filter_width, in_channels, channel_multiplier]``, same dtype.
        strides: 4 ints in the layout (TF's ``[1, s, s, 1]``), 2 ints ``(rows, cols)`` or one int.
            Unequal row and column strides are supported (TF's CPU kernel refuses them).
        padding: ``"SAME"``, ``"VALID"`` or TF's explicit list
            ``[[0, 0], [top, bottom], [left, right], [0, 0]]`` (NHWC order).
        data_format: ``"NHWC"`` (default) or ``"NCHW"``.
        dilations: None, or 2 ints (rows, cols) for atrous convolution (strides must then be 1).
        target: a named target (``dwc targets``); ``"host"`` is this machine's CPU.

    Returns:
        The output as a NumPy array in `data_format`, of the input's dtype.

    The kernel is compiled on first use of each (shapes, parameters, dtype, target) and cached
    for the life of the process.

    Raises:
        InvalidSpecError, InvalidArgumentError: naming the parameter at fault.
        UnknownTargetError: for a target name that is not known.
    """
    input = _array_of(input, "input")
    filter = _array_of(filter, "filter")
    key = (input.shape, getattr(input, "dtype", None), filter.shape, getattr(filter, "dtype", None),
           _hashable(strides), _hashable(padding), data_format, _hashable(dilations), target)
    kernel = _kernels.get(key)
    if kernel is None:
        kernel = _compile_for(key, input, filter, strides, padding, data_format, dilations, target)
    return kernel(input, filter)


def _dtype_name(array: Any) -> str:
    """The element type's name of a NumPy array or a DLPack tensor (``torch.float16`` -> ``float16``)."""
    return str(getattr(array, "dtype", "?")).rsplit(".", 1)[-1]


def _compile_for(key, input, filter, strides, padding, data_format, dilations, target):
    from .build import build

    dtype = canonical_dtype(_dtype_name(input), "input dtype")
    filter_dtype = canonical_dtype(_dtype_name(filter), "filter dtype")
    if filter_dtype != dtype:
        raise InvalidArgumentError(f"filter: dtype {filter_dtype} differs from the input's {dtype}; they must match")
    spec = DepthwiseSpec.create(tuple(input.shape), tuple(filter.shape), strides, padding,
                                data_format, dilations, dtype)
    with _kernels_lock:
        kernel = _kernels.get(key)
        if kernel is None:
            kernel = build(spec, target)
            _kernels[key] = kernel
    return kernel


def clear_kernel_cache() -> None:
    """Forget every kernel compiled by :func:`depthwise_conv2d` in this process."""
    with _kernels_lock:
        _kernels.clear()
