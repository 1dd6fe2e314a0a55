"""The TF-compatible entry point, ``depthwise_conv2d``, with its per-process kernel cache."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .build import build
from .errors import InvalidArgumentError
from .ops.depthwise import DepthwiseSpec
from .ops.tf_params import canonical_dtype
from .runtime.arrays import as_numpy

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
    """`value` as it is when it is a NumPy array or a DLPack tensor with a shape and dtype, else
    as a NumPy array, or an InvalidArgumentError naming `parameter`."""
    if isinstance(value, np.ndarray) or (hasattr(value, "__dlpack__") and hasattr(value, "shape")
                                         and hasattr(value, "dtype")):
        return value
    if hasattr(value, "__dlpack__"):
        return as_numpy(value, parameter)
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{parameter}: expected an array, got {type(value).__name__}") from exc


def depthwise_conv2d(input: Any, filter: Any, strides: Any, padding: Any,
                     data_format: str | None = "NHWC", dilations: Any = None,
                     target: str = "host", bias: Any = None, activation: str | None = None,
                     filter_format: str = "HWCM") -> np.ndarray:
    """``tf.nn.depthwise_conv2d``, compiled by dwc: the same arguments, the same result, and a
    fused bias + activation epilogue.

    Args:
        input: 4-D array in `data_format` (NumPy, or anything speaking DLPack on the CPU).
        filter: the filter in `filter_format` (TF's ``[KH, KW, C, M]`` by default), same dtype.
        strides: 4 ints in the layout (TF's ``[1, s, s, 1]``), 2 ints ``(rows, cols)`` or one int.
            Unequal row and column strides are supported (TF's CPU kernel refuses them).
        padding: ``"SAME"``, ``"VALID"`` or TF's explicit list
            ``[[0, 0], [top, bottom], [left, right], [0, 0]]`` (NHWC order).
        data_format: ``"NHWC"`` (default) or ``"NCHW"``.
        dilations: None, or 2 ints (rows, cols) for atrous convolution (strides must then be 1).
        target: a named target (``dwc targets``); ``"host"`` is this machine's CPU.
        bias: None, or a 1-D array of ``C * M`` values in the input's dtype, added to each output
            channel inside the kernel.
        activation: None/``"none"``, ``"relu"`` or ``"relu6"``, applied after the bias inside the kernel.
        filter_format: ``"HWCM"`` (TF, default), ``"OIHW"`` (PyTorch's ``[C*M, 1, KH, KW]``) or
            ``"GOIHW"`` (oneDNN's ``[C, M, 1, KH, KW]``); with either data format.

    Returns:
        The output as a NumPy array in `data_format`, of the input's dtype.

    The kernel is compiled on first use of each (shapes, parameters, dtype, epilogue, target) and
    cached for the life of the process.

    Raises:
        InvalidSpecError, InvalidArgumentError: naming the parameter at fault.
        UnknownTargetError: for a target name that is not known.
    """
    try:
        key = _cache_key(input, filter, strides, padding, data_format, dilations, target, bias, activation,
                         filter_format)
        kernel = _kernels[key]
    except (AttributeError, KeyError, TypeError):  # not compiled yet, or not arrays yet
        kernel = None
    if kernel is not None:  # the lean path: the kernel checks what the key does not cover
        return kernel.call(input, filter) if bias is None else kernel.call(input, filter, bias)
    input = _array_of(input, "input")
    filter = _array_of(filter, "filter")
    inputs = (input, filter) if bias is None else (input, filter, _array_of(bias, "bias"))
    key = _cache_key(input, filter, strides, padding, data_format, dilations, target, bias, activation,
                     filter_format)
    kernel = _kernels.get(key)
    if kernel is None:
        kernel = _compile_for(key, inputs, strides, padding, data_format, dilations, target, activation,
                              filter_format)
    return kernel(*inputs)


def _cache_key(input, filter, strides, padding, data_format, dilations, target, bias, activation,
               filter_format) -> tuple:
    """What names a compiled kernel in the cache: the arrays' shapes, the input's dtype, every
    parameter, whether a bias is passed. The filter's and bias's dtypes (and the bias's shape)
    are checked by the kernel's compiled function on each call, so the key leaves them out
    (each element hashed costs ~0.1 us a call)."""
    return (input.shape, input.dtype, filter.shape,
            strides if type(strides) is int else _hashable(strides),
            padding if type(padding) is str else _hashable(padding), data_format,
            dilations if dilations is None else _hashable(dilations), target, bias is None, activation,
            filter_format)


def _dtype_name(array: Any) -> str:
    """The element type's name of a NumPy array or a DLPack tensor (``torch.float16`` -> ``float16``)."""
    return str(getattr(array, "dtype", "?")).rsplit(".", 1)[-1]


def _compile_for(key, inputs, strides, padding, data_format, dilations, target, activation, filter_format):
    input, filter, *bias = inputs
    dtype = canonical_dtype(_dtype_name(input), "input dtype")
    for name, array in (("filter", filter), *(("bias", value) for value in bias)):
        array_dtype = canonical_dtype(_dtype_name(array), f"{name} dtype")
        if array_dtype != dtype:
            raise InvalidArgumentError(f"{name}: dtype {array_dtype} differs from the input's {dtype}; they must match")
    spec = DepthwiseSpec.create(tuple(input.shape), tuple(filter.shape), strides, padding, data_format, dilations,
                                dtype, filter_format=filter_format, with_bias=bool(bias), activation=activation)
    if bias and tuple(bias[0].shape) != (spec.out_channels,):
        raise InvalidArgumentError(
            f"bias: expected a 1-D array of C*M = {spec.out_channels} values, got shape {list(bias[0].shape)}")
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
