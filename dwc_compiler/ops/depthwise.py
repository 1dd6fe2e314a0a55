"""Depthwise 2-D convolution (``tf.nn.depthwise_conv2d``): its spec, TE compute and float64 reference.

``output[b, i, j, k*M + q] = sum_{di, dj} filter[di, dj, k, q] * input[b, s0*i + d0*di, s1*j + d1*dj, k]``,
then an optional bias and ReLU/ReLU6 (dwc's fused epilogue).

:class:`DepthwiseSpec` is an immutable, validated description of one call in TF's terms: every
check of user input happens here, once. It resolves TF's padding modes into four numbers,
computes the output shape, FLOPs and minimum bytes moved, declares the arrays the kernel takes
(input, filter, optional bias, output), and names itself with a stable workload key.

Filter formats (never guessed from the shape):

==========  ======================  ===========================
format      shape                   whose
==========  ======================  ===========================
``HWCM``    ``[KH, KW, C, M]``      TensorFlow (the default)
``OIHW``    ``[C*M, 1, KH, KW]``    PyTorch (``groups=C``)
``GOIHW``   ``[C, M, 1, KH, KW]``   oneDNN (grouped weights)
==========  ======================  ===========================
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import BuildError, InvalidSpecError
from .channel_blocks import ChannelBlocks
from .epilogue import check_activation, check_bias_flag, describe_epilogue, numpy_epilogue, te_epilogue
from .primfunc import BLOCK_CONV, BLOCK_EPILOGUE, BLOCK_PAD, SumStage, accumulator_dtype
from .signature import Argument
from .tf_params import (PADDING_MODES, IntOrInts, PaddingArg, canonical_dtype, check_data_format, int_tuple,
                        layout_of, positive_shape, resolve_padding, spatial_pair)

OP_NAME = "depthwise"
# Filter format -> its layout in words.
FILTER_FORMATS = {"HWCM": "[KH, KW, C, M]", "OIHW": "[C*M, 1, KH, KW]", "GOIHW": "[C, M, 1, KH, KW]"}


def check_filter_format(filter_format: Any) -> str:
    """`filter_format` (None means HWCM), or an InvalidSpecError naming the accepted formats."""
    if filter_format is None:
        return "HWCM"
    if filter_format not in FILTER_FORMATS:
        accepted = ", ".join(f"{name} {layout}" for name, layout in FILTER_FORMATS.items())
        raise InvalidSpecError(f"filter_format: expected one of {accepted}, got {filter_format!r}")
    return filter_format


def _window_of(filter_shape: tuple[int, ...], filter_format: str, in_channels: int) -> tuple[int, int, int]:
    """(KH, KW, M) of a filter shape in `filter_format`, checked against the input's channels."""
    layout = FILTER_FORMATS[filter_format]
    if filter_format == "HWCM":
        height, width, channels, multiplier = filter_shape
        if channels != in_channels:
            raise InvalidSpecError(
                f"filter shape: in_channels (dimension 2 of {layout}) must equal the input's channels "
                f"({in_channels}), got {channels} in {list(filter_shape)}")
        return height, width, multiplier
    if filter_format == "OIHW":
        out_channels, group_inputs, height, width = filter_shape
        if group_inputs != 1 or out_channels % in_channels:
            raise InvalidSpecError(
                f"filter shape: an OIHW depthwise filter is {layout} with C = {in_channels} input channels "
                f"(dimension 0 a multiple of {in_channels}, dimension 1 equal to 1), got {list(filter_shape)}")
        return height, width, out_channels // in_channels
    groups, multiplier, group_inputs, height, width = filter_shape
    if groups != in_channels or group_inputs != 1:
        raise InvalidSpecError(
            f"filter shape: a GOIHW depthwise filter is {layout} with C = {in_channels} input channels "
            f"(dimension 0 equal to {in_channels}, dimension 2 equal to 1), got {list(filter_shape)}")
    return height, width, multiplier


def filter_from_hwcm(weights: np.ndarray, filter_format: str) -> np.ndarray:
    """A TF ``[KH, KW, C, M]`` filter rewritten in `filter_format` (a C-contiguous copy)."""
    height, width, channels, multiplier = weights.shape
    if filter_format == "HWCM":
        return np.ascontiguousarray(weights)
    per_channel = weights.transpose(2, 3, 0, 1)  # [C, M, KH, KW]
    if filter_format == "OIHW":
        return np.ascontiguousarray(per_channel.reshape(channels * multiplier, 1, height, width))
    return np.ascontiguousarray(per_channel.reshape(channels, multiplier, 1, height, width))


def filter_as_hwcm(weights: np.ndarray, filter_format: str, in_channels: int) -> np.ndarray:
    """A filter in `filter_format` for `in_channels` input channels as TF's ``[KH, KW, C, M]``
    (a view where possible)."""
    if filter_format == "HWCM":
        return weights
    if filter_format == "OIHW":
        _, _, height, width = weights.shape
        return weights[:, 0].reshape(in_channels, -1, height, width).transpose(2, 3, 0, 1)
    return weights[:, :, 0].transpose(2, 3, 0, 1)


@dataclasses.dataclass(frozen=True)
class DepthwiseSpec:
    """One depthwise 2-D convolution with its fused epilogue, validated.

    Build it with :meth:`create` (TF's argument forms) or the constructor (the resolved form).

    Attributes:
        input_shape: the input's shape in ``data_format`` (``[N, H, W, C]`` or ``[N, C, H, W]``).
        filter_shape: the filter's shape in ``filter_format``.
        strides: ``(row_stride, col_stride)``.
        pads: ``(top, bottom, left, right)`` zero padding, resolved from the padding mode.
        dilations: ``(row_dilation, col_dilation)``; above 1 only with strides of 1 for TF's
            ``HWCM`` filter (TF's rule), with any strides for ``OIHW`` and ``GOIHW`` (as in
            PyTorch and oneDNN).
        data_format: ``"NHWC"`` or ``"NCHW"``.
        dtype: ``"float32"``, ``"float16"`` or ``"float64"``.
        padding_mode: ``"SAME"``, ``"VALID"`` or ``"EXPLICIT"``: how the pads were given.
        filter_format: ``"HWCM"`` (TF), ``"OIHW"`` (PyTorch) or ``"GOIHW"`` (oneDNN).
        with_bias: whether the kernel takes a bias of ``C * M`` values, added to each output channel.
        activation: ``"none"``, ``"relu"`` or ``"relu6"``, applied after the bias.

    Raises:
        InvalidSpecError: naming the parameter, for any value TF would refuse (and for
            outputs that would be empty).
    """

    input_shape: tuple[int, int, int, int]
    filter_shape: tuple[int, ...]
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilations: tuple[int, int] = (1, 1)
    data_format: str = "NHWC"
    dtype: str = "float32"
    padding_mode: str = "EXPLICIT"
    filter_format: str = "HWCM"
    with_bias: bool = False
    activation: str = "none"

    op = OP_NAME

    def __post_init__(self) -> None:
        set_field = object.__setattr__
        set_field(self, "data_format", check_data_format(self.data_format))
        set_field(self, "filter_format", check_filter_format(self.filter_format))
        set_field(self, "input_shape", positive_shape(self.input_shape, "input shape", layout_of(self.data_format)))
        set_field(self, "filter_shape", positive_shape(
            self.filter_shape, "filter shape", f"{FILTER_FORMATS[self.filter_format]} ({self.filter_format})",
            rank=5 if self.filter_format == "GOIHW" else 4))
        set_field(self, "dtype", canonical_dtype(self.dtype))
        set_field(self, "strides", spatial_pair(self.strides, "strides", self.data_format))
        set_field(self, "dilations", spatial_pair(self.dilations, "dilations", self.data_format))
        set_field(self, "with_bias", check_bias_flag(self.with_bias))
        set_field(self, "activation", check_activation(self.activation))
        pads = int_tuple(self.pads, "padding")
        if len(pads) != 4 or min(pads) < 0:
            raise InvalidSpecError(f"padding: expected four amounts >= 0 (top, bottom, left, right), got {list(pads)}")
        set_field(self, "pads", pads)
        if self.padding_mode not in PADDING_MODES + ("EXPLICIT",):
            raise InvalidSpecError(f"padding: expected 'SAME', 'VALID' or an explicit list, got {self.padding_mode!r}")
        set_field(self, "_window", _window_of(self.filter_shape, self.filter_format, self.in_channels))
        if max(self.dilations) > 1 and max(self.strides) > 1 and self.filter_format == "HWCM":
            # TF's rule; PyTorch and oneDNN (the OIHW and GOIHW forms) take both at once.
            raise InvalidSpecError(
                f"dilations: dilations above 1 ({list(self.dilations)}) need strides of 1, "
                f"as in TF, with an HWCM filter; got strides {list(self.strides)}")
        for axis, size, kernel, dilation, before, after in (
                ("height", self.in_height, self.filter_height, self.dilations[0], *self.pads[0:2]),
                ("width", self.in_width, self.filter_width, self.dilations[1], *self.pads[2:4])):
            effective_kernel = (kernel - 1) * dilation + 1
            if size + before + after < effective_kernel:
                raise InvalidSpecError(
                    f"input shape: the output would be empty: padded input {axis} "
                    f"{size + before + after} is smaller than the dilated filter {axis} {effective_kernel}")

    @classmethod
    def create(cls, input_shape: Sequence[int], filter_shape: Sequence[int], strides: IntOrInts = 1,
               padding: PaddingArg = "VALID", data_format: str | None = "NHWC",
               dilations: IntOrInts | None = None, dtype: Any = "float32", *, filter_format: str | None = "HWCM",
               with_bias: bool = False, activation: str | None = None) -> "DepthwiseSpec":
        """A spec from TF's argument forms (`tf.nn.depthwise_conv2d`) and dwc's epilogue.

        Args:
            input_shape: 4 sizes in ``data_format``.
            filter_shape: the filter's shape in ``filter_format`` (TF's ``[KH, KW, C, M]`` by default).
            strides: an int, ``(rows, cols)``, or 4 ints in the layout (``[1, s, s, 1]`` NHWC).
            padding: ``"SAME"``, ``"VALID"``, TF's explicit 4x2 list in the layout,
                ``[[top, bottom], [left, right]]`` or ``[top, bottom, left, right]``.
            data_format: ``"NHWC"`` (default, also for None) or ``"NCHW"``.
            dilations: None, an int, ``(rows, cols)`` or 4 ints in the layout.
            dtype: float32, float16 or float64 (any NumPy dtype spelling).
            filter_format: ``"HWCM"`` (default), ``"OIHW"`` or ``"GOIHW"``.
            with_bias: the kernel adds a bias of ``C * M`` values.
            activation: None/``"none"``, ``"relu"`` or ``"relu6"``.

        Raises:
            InvalidSpecError: naming the parameter and what is accepted.
        """
        data_format = check_data_format(data_format)
        filter_format = check_filter_format(filter_format)
        input_shape = positive_shape(input_shape, "input shape", layout_of(data_format))
        filter_shape = positive_shape(filter_shape, "filter shape", f"{FILTER_FORMATS[filter_format]} ({filter_format})",
                                      rank=5 if filter_format == "GOIHW" else 4)
        stride_pair = spatial_pair(strides, "strides", data_format)
        dilation_pair = spatial_pair(dilations, "dilations", data_format)
        in_channels = input_shape[3] if data_format == "NHWC" else input_shape[1]
        height, width, _ = _window_of(filter_shape, filter_format, in_channels)
        in_size = (input_shape[1], input_shape[2]) if data_format == "NHWC" else (input_shape[2], input_shape[3])
        mode, pads = resolve_padding(padding, data_format, in_size, (height, width), stride_pair, dilation_pair)
        return cls(input_shape=input_shape, filter_shape=filter_shape, strides=stride_pair, pads=pads,
                   dilations=dilation_pair, data_format=data_format, dtype=dtype, padding_mode=mode,
                   filter_format=filter_format, with_bias=with_bias, activation=check_activation(activation))

    # --- dimensions -----------------------------------------------------------------
    @property
    def batch(self) -> int:
        """N."""
        return self.input_shape[0]

    @property
    def in_channels(self) -> int:
        """C."""
        return self.input_shape[3] if self.data_format == "NHWC" else self.input_shape[1]

    @property
    def in_height(self) -> int:
        """H."""
        return self.input_shape[1] if self.data_format == "NHWC" else self.input_shape[2]

    @property
    def in_width(self) -> int:
        """W."""
        return self.input_shape[2] if self.data_format == "NHWC" else self.input_shape[3]

    @property
    def filter_height(self) -> int:
        """KH."""
        return self._window[0]

    @property
    def filter_width(self) -> int:
        """KW."""
        return self._window[1]

    @property
    def multiplier(self) -> int:
        """M, the channel multiplier."""
        return self._window[2]

    @property
    def out_channels(self) -> int:
        """C * M."""
        return self.in_channels * self.multiplier

    @property
    def out_height(self) -> int:
        """Output rows."""
        effective = (self.filter_height - 1) * self.dilations[0] + 1
        return (self.in_height + self.pads[0] + self.pads[1] - effective) // self.strides[0] + 1

    @property
    def out_width(self) -> int:
        """Output columns."""
        effective = (self.filter_width - 1) * self.dilations[1] + 1
        return (self.in_width + self.pads[2] + self.pads[3] - effective) // self.strides[1] + 1

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        """The output's shape in ``data_format``."""
        if self.data_format == "NHWC":
            return (self.batch, self.out_height, self.out_width, self.out_channels)
        return (self.batch, self.out_channels, self.out_height, self.out_width)

    @property
    def channel_axis(self) -> int:
        """The channel axis of input and output in ``data_format``."""
        return 3 if self.data_format == "NHWC" else 1

    @property
    def arguments(self) -> tuple[Argument, ...]:
        """The arrays the kernel takes, in order: input, filter, bias (with one), output."""
        layout = layout_of(self.data_format)
        arguments = [Argument("input", self.input_shape, self.dtype, layout),
                     Argument("filter", self.filter_shape, self.dtype, FILTER_FORMATS[self.filter_format])]
        if self.with_bias:
            arguments.append(Argument("bias", (self.out_channels,), self.dtype, "[C*M]"))
        arguments.append(Argument("output", self.output_shape, self.dtype, layout))
        return tuple(arguments)

    @property
    def flops(self) -> int:
        """``2 * N * OH * OW * C * M * KH * KW``."""
        return (2 * self.batch * self.out_height * self.out_width * self.out_channels
                * self.filter_height * self.filter_width)

    @property
    def itemsize(self) -> int:
        """Bytes per element of ``dtype``."""
        return np.dtype(self.dtype).itemsize

    @property
    def min_bytes_moved(self) -> int:
        """Every argument read or written once."""
        return sum(math.prod(argument.shape) for argument in self.arguments) * self.itemsize

    # --- identity ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that :meth:`from_dict` reads back."""
        return {
            "op": OP_NAME, "input_shape": list(self.input_shape), "filter_shape": list(self.filter_shape),
            "strides": list(self.strides), "pads": list(self.pads), "dilations": list(self.dilations),
            "data_format": self.data_format, "dtype": self.dtype, "padding_mode": self.padding_mode,
            "filter_format": self.filter_format, "with_bias": self.with_bias, "activation": self.activation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DepthwiseSpec":
        """The spec written by :meth:`to_dict`.

        Raises:
            InvalidSpecError: if a field is missing or invalid.
        """
        fields = ("input_shape", "filter_shape", "strides", "pads", "dilations", "data_format", "dtype")
        missing = [name for name in fields if name not in data]
        if missing:
            raise InvalidSpecError(f"spec: missing field(s) {', '.join(missing)}")
        return cls(**{name: data[name] for name in fields}, padding_mode=data.get("padding_mode", "EXPLICIT"),
                   filter_format=data.get("filter_format", "HWCM"), with_bias=data.get("with_bias", False),
                   activation=data.get("activation", "none"))

    def _key(self, fields: dict[str, Any]) -> str:
        # The fields added with the epilogue and filter formats enter the key only when they are
        # not their defaults, so that the keys of plain TF specs (and the records under them) stay.
        defaults = {"op": OP_NAME, "filter_format": "HWCM", "with_bias": False, "activation": "none"}
        canonical = {key: value for key, value in fields.items()
                     if key != "padding_mode" and not (key in defaults and value == defaults[key])}
        return "dw-" + hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def workload_key(self) -> str:
        """A stable name of what is computed: equal specs (however the padding was given) share it."""
        return self._key(self.to_dict())

    @property
    def tuning_key(self) -> str:
        """The name tuning records are kept under: the loop nest's, so the same convolution with
        or without the fused epilogue (which adds no loop) shares records."""
        return self._key({**self.to_dict(), "with_bias": False, "activation": "none"})

    def sum_stages(self) -> tuple[SumStage, ...]:
        """The window sum and the epilogue that finishes it."""
        return (SumStage(BLOCK_CONV, BLOCK_EPILOGUE, self.with_bias, self.activation),)

    def without_epilogue(self) -> "DepthwiseSpec":
        """The same convolution with no bias and no activation."""
        return dataclasses.replace(self, with_bias=False, activation="none")

    def describe(self) -> str:
        """One line for people: layout, shapes, strides, padding, epilogue, dtype and output shape."""
        shape = "x".join(str(size) for size in self.input_shape)
        window = "x".join(str(size) for size in self.filter_shape)
        if self.filter_format != "HWCM":
            window += f" ({self.filter_format})"
        text = f"{self.data_format} {shape} * {window} stride {self.strides[0]}x{self.strides[1]}"
        if self.dilations != (1, 1):
            text += f" dilation {self.dilations[0]}x{self.dilations[1]}"
        pad_text = self.padding_mode if self.padding_mode != "EXPLICIT" else f"pads {list(self.pads)}"
        epilogue = describe_epilogue(self.with_bias, self.activation)
        return f"{text} {pad_text}{epilogue} {self.dtype} -> {'x'.join(str(size) for size in self.output_shape)}"

    # --- compute and reference -----------------------------------------------------
    def filter_index_to_hwmc(self):
        """The index map from a filter index in ``filter_format`` to ``(KH, KW, M, C)``, the
        layout CPU schedules relay the filter to (channels contiguous per multiple)."""
        multiplier = self.multiplier
        if self.filter_format == "HWCM":
            return lambda row, col, channel, multiple: (row, col, multiple, channel)
        if self.filter_format == "OIHW":
            return lambda out_channel, _one, row, col: (row, col, out_channel % multiplier, out_channel // multiplier)
        return lambda channel, multiple, _one, row, col: (row, col, multiple, channel)

    def te_tensors(self, channel_blocks: ChannelBlocks | None = None) -> list:
        """The TE tensors of the kernel's arguments (``spec.arguments`` order): blocks ``pad``,
        ``conv`` (accumulating in float32 for float16) and ``epilogue``; with `channel_blocks`,
        the bias and output over the blocks' positions (see :func:`te_depthwise`)."""
        return _te_tensors(self, channel_blocks)

    def reference(self, input: np.ndarray, filter: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
        """This spec computed in float64 by NumPy, straight from the op's definition.

        Returns:
            The output in ``data_format``, float64.
        """
        return _reference(self, input, filter, bias)


# NCHW sums cover whole vectors of this many columns (AVX2's float32 vector; two NEON ones).
NCHW_SUM_WIDTH_MULTIPLE = 8


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def input_span(outputs: int, stride: int, window: int, dilation: int) -> int:
    """Input rows (or columns) that `outputs` neighbouring output rows (or columns) read, with
    that `stride` and a `window` of taps `dilation` apart."""
    return (outputs - 1) * stride + (window - 1) * dilation + 1


def sum_width(spec: DepthwiseSpec) -> int:
    """Columns of one row of the ``conv`` block's sums: the output's width, rounded up to whole
    vectors for NCHW (whose rows are vectorized along columns)."""
    return spec.out_width if spec.data_format == "NHWC" else _round_up(spec.out_width, NCHW_SUM_WIDTH_MULTIPLE)


def _te_tensors(spec: DepthwiseSpec, channel_blocks: ChannelBlocks | None) -> list:
    from tvm import te

    data = te.placeholder(spec.input_shape, spec.dtype, name="input")
    weights = te.placeholder(spec.filter_shape, spec.dtype, name="filter")
    bias_length = spec.out_channels if channel_blocks is None else channel_blocks.extent  # by position
    bias = te.placeholder((bias_length,), spec.dtype, name="bias") if spec.with_bias else None
    output = te_depthwise(spec, data, weights, bias, BLOCK_EPILOGUE, channel_blocks=channel_blocks)
    return [data, weights, *([bias] if bias is not None else []), output]


def te_depthwise(spec: DepthwiseSpec, data, weights, bias, name: str, whole_vectors: bool = False,
                 channel_blocks: ChannelBlocks | None = None):
    """The TE tensor of `spec` (blocks ``pad``, ``conv`` and `name`, the epilogue: bias,
    activation, the cast to the storage dtype) on the placeholders `data`, `weights` and `bias`
    (None: no bias). The result has ``spec.output_shape``; with `whole_vectors`, an NCHW result
    keeps the ``conv`` block's width (:func:`sum_width`), for a consumer vectorized along columns.

    With `channel_blocks` (NHWC, multiplier 1), the channel axis of ``conv`` and the result runs
    over the blocks' positions, each reading the input and filter at the channel it computes;
    the bias and the result are indexed by position, which :func:`~.primfunc.prim_func` maps
    to channels in the PrimFunc's signature."""
    from tvm import te, tirx

    nhwc = spec.data_format == "NHWC"
    pad_top, pad_bottom, pad_left, pad_right = spec.pads
    row_stride, col_stride = spec.strides
    row_dilation, col_dilation = spec.dilations
    multiplier = spec.multiplier
    acc_dtype = accumulator_dtype(spec.dtype)

    padded_height = spec.in_height + pad_top + pad_bottom
    padded_width = spec.in_width + pad_left + pad_right
    columns = sum_width(spec)
    if not nhwc:
        # NCHW rows are vectorized along columns: the sums cover the row rounded up to whole
        # vectors (the epilogue stores only the real columns; 14x14x384-s1: 266 -> 125 us), so
        # the padded plane reaches as far as their windows do.
        reach = input_span(columns, col_stride, spec.filter_width, col_dilation)
        # A whole number of column strides: the CPU schedules lay a strided plane out as
        # [row, col % stride, col // stride]; a ragged end would leave slots no column maps to,
        # whose filling TVM puts in a block over the whole tensor at the end of the function,
        # which keeps the whole copy alive (56x56x144-s2: 2 MB instead of one L1-sized plane).
        padded_width = _round_up(max(padded_width, reach), col_stride)

    def load_padded(n, channel, row, col):
        # One `likely` per bound: TVM's LoopPartition splits a loop on a likely test of its own
        # variable only, so joined tests (row and column) kept every tile's bounds checks.
        # NCHW rows are vectorized along columns, so the column test differs per lane: it is a
        # `Select`, which TVM's vectorizer keeps a vector (an `if_then_else` it makes scalar, and
        # a `likely` on a vectorized loop LoopPartition splits into loops it cannot vectorize).
        # Lowered, a scalar `Select` of a load becomes an `if_then_else` (RewriteUnsafeSelect),
        # and a vector one a masked load (dwc_compiler/tir_passes.py); the CPU schedules that
        # copy planes peel the padding columns off themselves (schedules/cpu.py).
        rows_inside = tirx.all(*(tirx.likely(test) for test in (row >= pad_top, row < spec.in_height + pad_top)))
        cols_inside = (col >= pad_left, col < spec.in_width + pad_left)
        zero = tirx.const(0, spec.dtype)
        if nhwc:
            inside = tirx.all(rows_inside, *(tirx.likely(test) for test in cols_inside))
            return tirx.if_then_else(inside, data[n, row - pad_top, col - pad_left, channel], zero)
        value = tirx.Select(tirx.all(*cols_inside), data[n, channel, row - pad_top, col - pad_left], zero)
        return tirx.if_then_else(rows_inside, value, zero)

    if nhwc:
        padded = te.compute((spec.batch, padded_height, padded_width, spec.in_channels),
                            lambda n, row, col, c: load_padded(n, c, row, col), name=BLOCK_PAD)
    else:
        padded = te.compute((spec.batch, spec.in_channels, padded_height, padded_width),
                            lambda n, c, row, col: load_padded(n, c, row, col), name=BLOCK_PAD)

    def filter_tap(window_row, window_col, channel, multiple):
        if spec.filter_format == "HWCM":
            return weights[window_row, window_col, channel, multiple]
        if spec.filter_format == "OIHW":
            return weights[channel * multiplier + multiple, 0, window_row, window_col]
        return weights[channel, multiple, 0, window_row, window_col]

    window_row = te.reduce_axis((0, spec.filter_height), name="window_row")
    window_col = te.reduce_axis((0, spec.filter_width), name="window_col")

    def window_sum(n, out_channel, out_row, out_col):
        channel = out_channel // multiplier
        row = out_row * row_stride + window_row * row_dilation
        col = out_col * col_stride + window_col * col_dilation
        pixel = padded[n, row, col, channel] if nhwc else padded[n, channel, row, col]
        weight = filter_tap(window_row, window_col, channel, out_channel % multiplier)
        return te.sum(pixel.astype(acc_dtype) * weight.astype(acc_dtype), axis=[window_row, window_col])

    if channel_blocks is not None:
        if not nhwc or multiplier != 1 or channel_blocks.channels != spec.in_channels:
            raise BuildError(f"internal: channel blocks {channel_blocks} do not fit {spec.describe()}")
        acc = te.compute((*spec.output_shape[:3], channel_blocks.extent),
                         lambda n, i, j, position: window_sum(n, channel_blocks.channel(position), i, j),
                         name=BLOCK_CONV)
    elif nhwc:
        acc = te.compute(spec.output_shape, lambda n, i, j, k: window_sum(n, k, i, j), name=BLOCK_CONV)
    else:
        acc = te.compute((spec.batch, spec.out_channels, spec.out_height, columns),
                         lambda n, k, i, j: window_sum(n, k, i, j), name=BLOCK_CONV)

    def finish(*index):
        channel = index[spec.channel_axis]
        value = te_epilogue(acc[index], bias[channel] if bias is not None else None, spec.activation, acc_dtype)
        return value.astype(spec.dtype)

    shape = acc.shape if whole_vectors or channel_blocks is not None else spec.output_shape
    return te.compute(shape, finish, name=name)


def _reference(spec: DepthwiseSpec, input: np.ndarray, filter: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    data = np.asarray(input, dtype=np.float64)
    if spec.data_format == "NCHW":
        data = data.transpose(0, 2, 3, 1)
    weights = filter_as_hwcm(np.asarray(filter, dtype=np.float64), spec.filter_format, spec.in_channels)
    top, bottom, left, right = spec.pads
    padded = np.pad(data, ((0, 0), (top, bottom), (left, right), (0, 0)))
    row_stride, col_stride = spec.strides
    row_dilation, col_dilation = spec.dilations
    out_height, out_width = spec.out_height, spec.out_width
    out = np.zeros((spec.batch, out_height, out_width, spec.in_channels, spec.multiplier))
    for window_row in range(spec.filter_height):
        for window_col in range(spec.filter_width):
            row0, col0 = window_row * row_dilation, window_col * col_dilation
            pixels = padded[:, row0:row0 + (out_height - 1) * row_stride + 1:row_stride,
                            col0:col0 + (out_width - 1) * col_stride + 1:col_stride, :]
            out += pixels[..., None] * weights[window_row, window_col]
    out = out.reshape(spec.batch, out_height, out_width, spec.out_channels)
    out = numpy_epilogue(out, bias if spec.with_bias else None, spec.activation, channel_axis=3)
    return out.transpose(0, 3, 1, 2) if spec.data_format == "NCHW" else out
