"""The TF-compatible entry points, ``depthwise_conv2d`` and ``separable_conv2d``, with their
per-process kernel cache."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .build import build
from .calls_by_weights import CallsByWeights
from .errors import InvalidArgumentError
from .ops.depthwise import DepthwiseSpec
from .ops.separable import SeparableSpec
from .ops.tf_params import canonical_dtype
from .runtime import Kernel
from .runtime.arrays import as_numpy

_kernels: dict[tuple, Any] = {}  # by _cache_key
_lean_calls: dict[tuple, Any] = {}  # Kernel.call_exact by _lean_key: depthwise_conv2d's lean path
_calls_by_filter = CallsByWeights()  # Kernel.call_exact by the filter object and the other parameters: its first lookup
_separable_calls_by_filter = CallsByWeights()  # the same for separable_conv2d, by the depthwise filter
# Their lookups, bound once: the attribute lookups cost ~0.05 us a call.
_call_by_filter, _separable_call_by_filter = _calls_by_filter.entries.get, _separable_calls_by_filter.entries.get
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
    entry = _call_by_filter(id(filter))  # the kernel last called with this filter object and these parameters
    if entry is not None and entry[0]() is filter:
        try:  # a shared filter's entry holds None, which no parameters equal
            same = entry[1] == (strides, padding, data_format, dilations, target, bias is None, activation,
                                filter_format)
        except (TypeError, ValueError):  # an array among the parameters: the lookups below take them
            same = False
        if same:
            try:
                return entry[2](input, filter) if bias is None else entry[2](input, filter, bias)
            except InvalidArgumentError:  # arrays of another shape or dtype: the lookups below find their kernel
                _calls_by_filter.share(filter)
    given = (strides, padding, data_format, dilations, target, bias is None, activation, filter_format)
    try:  # the lean path: see _lean_key
        call = _lean_calls[(input.shape, filter.shape,
                            strides if type(strides) is int else tuple(strides) if type(strides) is list
                            else _hashable(strides), padding if type(padding) is str else _hashable(padding),
                            data_format, dilations if dilations is None else _hashable(dilations), target,
                            bias is None, activation, filter_format)]
    except (AttributeError, KeyError, TypeError):  # not compiled yet, or not arrays yet
        call = None
    if call is not None:
        try:
            result = call(input, filter) if bias is None else call(input, filter, bias)
        except InvalidArgumentError:
            pass  # arrays that kernel does not take (another dtype): the full path finds theirs, or names what is wrong
        else:
            _calls_by_filter.keep(filter, given, call)
            return result
    inputs = _depthwise_inputs(input, filter, bias)
    kernel = _depthwise_kernel_of(inputs, strides, padding, data_format, dilations, target, activation,
                                  filter_format)
    result = kernel.call_exact(*inputs)
    if inputs[1] is filter:  # not an array made from the caller's (a list, say), which no later call passes
        _calls_by_filter.keep(filter, given, kernel.call_exact)
    return result


def depthwise_kernel(input: Any, filter: Any, strides: Any, padding: Any, data_format: str | None = "NHWC",
                     dilations: Any = None, target: str = "host", bias: Any = None, activation: str | None = None,
                     filter_format: str = "HWCM") -> Kernel:
    """The cached :class:`~dwc_compiler.runtime.Kernel` that :func:`depthwise_conv2d` runs for
    these arguments (compiled on first use), for callers that run it many times on arrays of one
    signature: ``kernel.call(input, filter)`` (or ``(input, filter, bias)``) skips the argument
    parsing and cache lookup of each :func:`depthwise_conv2d` call. The arrays only give shapes
    and dtypes; the arguments are those of :func:`depthwise_conv2d`. Bad arguments are named when
    the kernel is first made; for a signature already cached, the kernel's call names them."""
    return _depthwise_kernel_of(_depthwise_inputs(input, filter, bias), strides, padding, data_format, dilations,
                                target, activation, filter_format)


def _depthwise_inputs(input: Any, filter: Any, bias: Any) -> tuple:
    """The arrays of a depthwise call as the kernel takes them (see :func:`_array_of`)."""
    arrays = (_array_of(input, "input"), _array_of(filter, "filter"))
    return arrays if bias is None else (*arrays, _array_of(bias, "bias"))


def _depthwise_kernel_of(inputs: tuple, strides, padding, data_format, dilations, target, activation,
                         filter_format) -> Kernel:
    """The kernel for these arrays and parameters (compiled on first use), kept for the lean path."""
    input, filter, *bias = inputs
    bias = bias[0] if bias else None
    key = _cache_key(input, filter, strides, padding, data_format, dilations, target, bias, activation, filter_format)
    try:
        kernel = _kernels.get(key)
    except TypeError:  # an unhashable parameter: the spec names it
        kernel = None
    if kernel is None:
        kernel = _compile_for(key, inputs, strides, padding, data_format, dilations, target, activation,
                              filter_format)
    _keep_lean(_lean_key(input, filter, strides, padding, data_format, dilations, target, bias, activation,
                         filter_format), kernel, key)
    return kernel


def _cache_key(input, filter, strides, padding, data_format, dilations, target, bias, activation,
               filter_format) -> tuple:
    """What names a compiled kernel in the cache: the arrays' shapes, the input's dtype, every
    parameter, whether a bias is passed. The filter's and bias's dtypes (and the bias's shape)
    are checked by the kernel's compiled function on each call, so the key leaves them out."""
    return (input.shape, input.dtype, filter.shape,
            strides if type(strides) is int else _hashable(strides),
            padding if type(padding) is str else _hashable(padding), data_format,
            dilations if dilations is None else _hashable(dilations), target, bias is None, activation,
            filter_format)


def _lean_key(input, filter, strides, padding, data_format, dilations, target, bias, activation,
              filter_format) -> tuple:
    """The key of :func:`depthwise_conv2d`'s lean path (which writes it out inline): the arrays'
    shapes and the parameters name the kernel last run with them.

    It leaves out the dtypes, which the kernel's compiled function checks on every call (each
    element hashed costs ~0.1 us a call): arrays of another dtype for the same shapes make that
    kernel's call raise, and the full path then runs the kernel of their own, which the lean
    path keeps from then on."""
    return (input.shape, filter.shape,
            strides if type(strides) is int else tuple(strides) if type(strides) is list else _hashable(strides),
            padding if type(padding) is str else _hashable(padding), data_format,
            dilations if dilations is None else _hashable(dilations), target, bias is None, activation,
            filter_format)


def _keep_lean(lean_key: tuple, kernel: Kernel, key: tuple) -> None:
    """Keep `kernel`'s call under `lean_key`, unless the cache no longer holds `kernel` under its
    `key` (:func:`clear_kernel_cache` ran since it was found)."""
    with _kernels_lock:
        if _kernels.get(key) is kernel:
            _lean_calls[lean_key] = kernel.call_exact


def _dtype_name(array: Any) -> str:
    """The element type's name of a NumPy array or a DLPack tensor (``torch.float16`` -> ``float16``)."""
    return str(getattr(array, "dtype", "?")).rsplit(".", 1)[-1]


def _common_dtype(named_arrays: dict[str, Any]) -> str:
    """The input's dtype name, once every other array is checked to have the same one."""
    dtype = canonical_dtype(_dtype_name(named_arrays["input"]), "input dtype")
    for name, array in named_arrays.items():
        array_dtype = canonical_dtype(_dtype_name(array), f"{name} dtype")
        if array_dtype != dtype:
            raise InvalidArgumentError(f"{name}: dtype {array_dtype} differs from the input's {dtype}; they must match")
    return dtype


def _check_bias(bias: Any, parameter: str, size: int, what: str) -> None:
    """An InvalidArgumentError unless `bias` (None: none given) is a 1-D array of `size` values."""
    if bias is not None and tuple(bias.shape) != (size,):
        raise InvalidArgumentError(f"{parameter}: expected a 1-D array of {what} = {size} values, "
                                   f"got shape {list(bias.shape)}")


def _compile_for(key, inputs, strides, padding, data_format, dilations, target, activation, filter_format):
    input, filter, *bias = inputs
    dtype = _common_dtype({"input": input, "filter": filter, **({"bias": bias[0]} if bias else {})})
    spec = DepthwiseSpec.create(tuple(input.shape), tuple(filter.shape), strides, padding, data_format, dilations,
                                dtype, filter_format=filter_format, with_bias=bool(bias), activation=activation)
    _check_bias(bias[0] if bias else None, "bias", spec.out_channels, "C*M")
    return _cached_build(key, spec, target)


def _cached_build(key: tuple, spec: Any, target: str):
    """The kernel cached under `key`, built for `spec` and `target` by the first caller."""
    with _kernels_lock:
        kernel = _kernels.get(key)
        if kernel is None:
            kernel = build(spec, target)
            _kernels[key] = kernel
    return kernel


def separable_conv2d(input: Any, depthwise_filter: Any, pointwise_filter: Any, strides: Any, padding: Any,
                     data_format: str | None = "NHWC", dilations: Any = None, target: str = "host",
                     depthwise_bias: Any = None, depthwise_activation: str | None = None,
                     pointwise_bias: Any = None, pointwise_activation: str | None = None) -> np.ndarray:
    """``tf.nn.separable_conv2d``, compiled by dwc into one fused kernel: the depthwise step,
    then the 1x1 pointwise product, with no intermediate tensor in memory; and a bias and
    activation after each step (a MobileNet block: depthwise -> bias -> ReLU6 -> pointwise -> bias).

    Args:
        input: 4-D array in `data_format` (NumPy, or anything speaking DLPack on the CPU).
        depthwise_filter: ``[KH, KW, C, M]``, the input's dtype.
        pointwise_filter: ``[1, 1, C*M, O]``, the input's dtype.
        strides, padding, data_format, dilations: as :func:`depthwise_conv2d`; they apply to the
            depthwise step (the pointwise step has stride 1 and no padding, as in TF).
        target: a named target (``dwc targets``); ``"host"`` is this machine's CPU.
        depthwise_bias: None, or C*M values added after the depthwise step.
        depthwise_activation: None/``"none"``, ``"relu"`` or ``"relu6"``, after the depthwise bias.
        pointwise_bias: None, or O values added after the pointwise step.
        pointwise_activation: None/``"none"``, ``"relu"`` or ``"relu6"``, after the pointwise bias.

    Returns:
        The output ``[N, OH, OW, O]`` (NHWC) or ``[N, O, OH, OW]`` (NCHW) as a NumPy array.

    The kernel is compiled on first use of each (shapes, parameters, dtype, epilogues, target)
    and cached for the life of the process.

    Raises:
        InvalidSpecError, InvalidArgumentError: naming the parameter at fault.
        UnknownTargetError: for a target name that is not known.
    """
    biases = [bias for bias in (depthwise_bias, pointwise_bias) if bias is not None]
    given = (strides, padding, data_format, dilations, target, depthwise_bias is None, depthwise_activation,
             pointwise_bias is None, pointwise_activation)  # as kept in _separable_calls_by_filter
    entry = _separable_call_by_filter(id(depthwise_filter))  # as in depthwise_conv2d
    if entry is not None and entry[0]() is depthwise_filter:
        try:
            same = entry[1] == given
        except (TypeError, ValueError):  # an array among the parameters
            same = False
        if same:
            try:
                return entry[2](input, depthwise_filter, pointwise_filter, *biases)
            except InvalidArgumentError:  # arrays of another shape or dtype: the lookup below finds their kernel
                _separable_calls_by_filter.share(depthwise_filter)
    parameters = _separable_parameters(strides, padding, data_format, dilations, target, depthwise_bias,
                                       depthwise_activation, pointwise_bias, pointwise_activation)
    try:
        kernel = _kernels[_separable_key(input, depthwise_filter, pointwise_filter, parameters)]
    except (AttributeError, KeyError, TypeError):  # not compiled yet, or not arrays yet
        kernel = None
    if kernel is None:
        named = _separable_inputs(input, depthwise_filter, pointwise_filter, depthwise_bias, pointwise_bias)
        kernel = _separable_kernel_of(named, parameters, strides, padding, data_format, dilations, target,
                                      depthwise_activation, pointwise_activation)
        result = kernel.call_exact(*named.values())
        if named["depthwise_filter"] is not depthwise_filter:  # an array made from the caller's (a list, say)
            return result
    else:  # the lean path: the kernel checks what the key does not cover
        result = kernel.call_exact(input, depthwise_filter, pointwise_filter, *biases)
    _separable_calls_by_filter.keep(depthwise_filter, given, kernel.call_exact)
    return result


def separable_kernel(input: Any, depthwise_filter: Any, pointwise_filter: Any, strides: Any, padding: Any,
                     data_format: str | None = "NHWC", dilations: Any = None, target: str = "host",
                     depthwise_bias: Any = None, depthwise_activation: str | None = None,
                     pointwise_bias: Any = None, pointwise_activation: str | None = None) -> Kernel:
    """The cached :class:`~dwc_compiler.runtime.Kernel` that :func:`separable_conv2d` runs for
    these arguments (compiled on first use): ``kernel.call(input, depthwise_filter,
    pointwise_filter, *biases)`` (the biases that were passed, in that order) skips the argument
    parsing and cache lookup of each call. The arrays only give shapes and dtypes; bad arguments
    are named as by :func:`depthwise_kernel`."""
    parameters = _separable_parameters(strides, padding, data_format, dilations, target, depthwise_bias,
                                       depthwise_activation, pointwise_bias, pointwise_activation)
    named = _separable_inputs(input, depthwise_filter, pointwise_filter, depthwise_bias, pointwise_bias)
    return _separable_kernel_of(named, parameters, strides, padding, data_format, dilations, target,
                                depthwise_activation, pointwise_activation)


def _separable_parameters(strides, padding, data_format, dilations, target, depthwise_bias, depthwise_activation,
                          pointwise_bias, pointwise_activation) -> tuple:
    """The non-array part of a separable call's cache key."""
    return (strides if type(strides) is int else _hashable(strides),
            padding if type(padding) is str else _hashable(padding), data_format,
            dilations if dilations is None else _hashable(dilations), target,
            depthwise_bias is None, depthwise_activation, pointwise_bias is None, pointwise_activation)


def _separable_inputs(input, depthwise_filter, pointwise_filter, depthwise_bias, pointwise_bias) -> dict[str, Any]:
    """The arrays of a separable call by parameter name, as the kernel takes them."""
    named = {"input": _array_of(input, "input"), "depthwise_filter": _array_of(depthwise_filter, "depthwise_filter"),
             "pointwise_filter": _array_of(pointwise_filter, "pointwise_filter")}
    if depthwise_bias is not None:
        named["depthwise_bias"] = _array_of(depthwise_bias, "depthwise_bias")
    if pointwise_bias is not None:
        named["pointwise_bias"] = _array_of(pointwise_bias, "pointwise_bias")
    return named


def _separable_kernel_of(named: dict[str, Any], parameters: tuple, strides, padding, data_format, dilations, target,
                         depthwise_activation, pointwise_activation) -> Kernel:
    key = _separable_key(named["input"], named["depthwise_filter"], named["pointwise_filter"], parameters)
    kernel = _kernels.get(key)
    if kernel is None:
        spec = SeparableSpec.create(
            tuple(named["input"].shape), tuple(named["depthwise_filter"].shape),
            tuple(named["pointwise_filter"].shape), strides, padding, data_format, dilations, _common_dtype(named),
            with_depthwise_bias="depthwise_bias" in named, depthwise_activation=depthwise_activation,
            with_pointwise_bias="pointwise_bias" in named, pointwise_activation=pointwise_activation)
        _check_bias(named.get("depthwise_bias"), "depthwise_bias", spec.depthwise_channels, "C*M")
        _check_bias(named.get("pointwise_bias"), "pointwise_bias", spec.out_channels, "out_channels O")
        kernel = _cached_build(key, spec, target)
    return kernel


def _separable_key(input, depthwise_filter, pointwise_filter, parameters: tuple) -> tuple:
    """What names a compiled separable kernel in the cache: the arrays' shapes, the input's dtype
    and every parameter (the kernel checks the other dtypes and the biases' shapes itself)."""
    return ("separable", input.shape, input.dtype, depthwise_filter.shape, pointwise_filter.shape, *parameters)


def clear_kernel_cache() -> None:
    """Forget every kernel compiled by :func:`depthwise_conv2d` and :func:`separable_conv2d` in this process."""
    with _kernels_lock:
        _kernels.clear()
        _lean_calls.clear()
        _calls_by_filter.clear()
        _separable_calls_by_filter.clear()
