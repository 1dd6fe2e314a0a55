"""`DepthwiseSpec`: one depthwise convolution, described and validated in TensorFlow's terms.

Every check of user input happens here, once. The spec resolves TF's padding modes
(``"SAME"``, ``"VALID"`` or an explicit list) into four numbers, computes the output shape,
the FLOPs and the minimum bytes moved, and names itself with a stable workload key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any, Union

import numpy as np

from .errors import InvalidSpecError

DATA_FORMATS = ("NHWC", "NCHW")
DTYPES = ("float32", "float16", "float64")
PADDING_MODES = ("SAME", "VALID")

PaddingArg = Union[str, Sequence[Any]]
IntOrInts = Union[int, Sequence[int]]


def _as_int(value: Any, parameter: str) -> int:
    """`value` as a Python int, or an InvalidSpecError naming `parameter`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidSpecError(f"{parameter}: expected an integer, got {value!r}")
    return int(value)


def _int_tuple(values: Any, parameter: str) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise InvalidSpecError(f"{parameter}: expected a list of integers, got {values!r}")
    return tuple(_as_int(v, parameter) for v in values)


def _shape(values: Any, parameter: str, layout: str) -> tuple[int, int, int, int]:
    shape = _int_tuple(values, parameter)
    if len(shape) != 4:
        raise InvalidSpecError(
            f"{parameter}: expected 4 dimensions {layout}, got {len(shape)} ({list(shape)})")
    if any(size < 1 for size in shape):
        raise InvalidSpecError(
            f"{parameter}: every dimension must be >= 1 ({layout}), got {list(shape)}")
    return shape  # type: ignore[return-value]


def _spatial_pair(values: IntOrInts | None, parameter: str, data_format: str) -> tuple[int, int]:
    """Strides or dilations as (rows, cols) from TF's accepted forms.

    Accepted: one int; two ints (rows, cols); four ints in the data format's layout whose
    batch and channel entries are 1 (TF's ``[1, s, s, 1]`` for NHWC, ``[1, 1, s, s]`` for NCHW).
    """
    if values is None:
        return (1, 1)
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        pair: tuple[int, ...] = (int(values), int(values))
    else:
        numbers = _int_tuple(values, parameter)
        if len(numbers) == 2:
            pair = numbers
        elif len(numbers) == 4:
            if data_format == "NHWC":
                outer, pair = (numbers[0], numbers[3]), numbers[1:3]
            else:
                outer, pair = (numbers[0], numbers[1]), numbers[2:4]
            if outer != (1, 1):
                raise InvalidSpecError(
                    f"{parameter}: the batch and channel entries must be 1 for {data_format} "
                    f"(e.g. {_layout_example(data_format)}), got {list(numbers)}")
        else:
            raise InvalidSpecError(
                f"{parameter}: expected 1, 2 (rows, cols) or 4 ({data_format}) integers, "
                f"got {len(numbers)} ({list(numbers)})")
    if any(v < 1 for v in pair):
        raise InvalidSpecError(f"{parameter}: every value must be >= 1, got {list(pair)}")
    return (pair[0], pair[1])


def _layout_example(data_format: str) -> str:
    return "[1, 2, 2, 1]" if data_format == "NHWC" else "[1, 1, 2, 2]"


def _explicit_padding(padding: Any, data_format: str) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) from an explicit padding argument.

    Accepted: TF's 4x2 list in the data format's layout (batch and channel pairs must be
    zero), a 2x2 list ``[[top, bottom], [left, right]]``, or four numbers
    ``[top, bottom, left, right]``.
    """
    try:
        array = np.asarray(padding)
    except Exception as exc:  # ragged lists and the like
        raise InvalidSpecError(f"padding: cannot read {padding!r} as a list of numbers") from exc
    if array.dtype.kind not in "iu" or array.shape not in ((4, 2), (2, 2), (4,)):
        raise InvalidSpecError(
            "padding: expected 'SAME', 'VALID', a 4x2 list in the data format's layout "
            "(e.g. [[0, 0], [1, 1], [2, 2], [0, 0]] for NHWC), [[top, bottom], [left, right]] "
            f"or [top, bottom, left, right], got {padding!r}")
    if array.shape == (4, 2):
        outer_rows = (0, 3) if data_format == "NHWC" else (0, 1)
        spatial_rows = (1, 2) if data_format == "NHWC" else (2, 3)
        if array[list(outer_rows)].any():
            raise InvalidSpecError(
                f"padding: the batch and channel pairs must be [0, 0] for {data_format}, "
                f"got {array.tolist()}")
        amounts = array[list(spatial_rows)].reshape(4)
    else:
        amounts = array.reshape(4)
    if (amounts < 0).any():
        raise InvalidSpecError(f"padding: amounts must be >= 0, got {array.tolist()}")
    return tuple(int(v) for v in amounts)  # type: ignore[return-value]


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TF's SAME rule: output ceil(size / stride); the extra padding goes after (bottom/right)."""
    effective_kernel = (kernel - 1) * dilation + 1
    out_size = -(-size // stride)
    total = max((out_size - 1) * stride + effective_kernel - size, 0)
    return total // 2, total - total // 2


def canonical_dtype(dtype: Any, parameter: str = "dtype") -> str:
    """The dtype's name if dwc supports it, else an InvalidSpecError naming `parameter`."""
    try:
        name = np.dtype(dtype).name
    except TypeError as exc:
        raise InvalidSpecError(f"{parameter}: unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}") from exc
    if name not in DTYPES:
        raise InvalidSpecError(f"{parameter}: {name} is not supported; expected one of {', '.join(DTYPES)}")
    return name


@dataclasses.dataclass(frozen=True)
class DepthwiseSpec:
    """One depthwise 2-D convolution, validated.

    Build it with :meth:`create` (TF's argument forms) or the constructor (the resolved form).

    Attributes:
        input_shape: the input's shape in ``data_format`` (``[N, H, W, C]`` or ``[N, C, H, W]``).
        filter_shape: ``[filter_height, filter_width, in_channels, channel_multiplier]``.
        strides: ``(row_stride, col_stride)``.
        pads: ``(top, bottom, left, right)`` zero padding, resolved from the padding mode.
        dilations: ``(row_dilation, col_dilation)``; above 1 only with strides of 1.
        data_format: ``"NHWC"`` or ``"NCHW"``.
        dtype: ``"float32"``, ``"float16"`` or ``"float64"``.
        padding_mode: ``"SAME"``, ``"VALID"`` or ``"EXPLICIT"``: how the pads were given.

    Raises:
        InvalidSpecError: naming the parameter, for any value TF would refuse (and for
            outputs that would be empty).
    """

    input_shape: tuple[int, int, int, int]
    filter_shape: tuple[int, int, int, int]
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilations: tuple[int, int] = (1, 1)
    data_format: str = "NHWC"
    dtype: str = "float32"
    padding_mode: str = "EXPLICIT"

    def __post_init__(self) -> None:
        if self.data_format not in DATA_FORMATS:
            raise InvalidSpecError(
                f"data_format: expected one of {', '.join(DATA_FORMATS)}, got {self.data_format!r}")
        layout = "[N, H, W, C]" if self.data_format == "NHWC" else "[N, C, H, W]"
        set_field = object.__setattr__
        set_field(self, "input_shape", _shape(self.input_shape, "input shape", layout))
        set_field(self, "filter_shape", _shape(
            self.filter_shape, "filter shape", "[filter_height, filter_width, in_channels, channel_multiplier]"))
        set_field(self, "dtype", canonical_dtype(self.dtype))
        set_field(self, "strides", _spatial_pair(self.strides, "strides", self.data_format))
        set_field(self, "dilations", _spatial_pair(self.dilations, "dilations", self.data_format))
        pads = _int_tuple(self.pads, "padding")
        if len(pads) != 4 or min(pads) < 0:
            raise InvalidSpecError(f"padding: expected four amounts >= 0 (top, bottom, left, right), got {list(pads)}")
        set_field(self, "pads", pads)
        if self.padding_mode not in PADDING_MODES + ("EXPLICIT",):
            raise InvalidSpecError(f"padding: expected 'SAME', 'VALID' or an explicit list, got {self.padding_mode!r}")
        if self.in_channels != self.filter_shape[2]:
            raise InvalidSpecError(
                f"filter shape: in_channels (dimension 2) must equal the input's channels "
                f"({self.in_channels} in {self.data_format} {list(self.input_shape)}), "
                f"got {self.filter_shape[2]} in {list(self.filter_shape)}")
        if max(self.dilations) > 1 and max(self.strides) > 1:
            raise InvalidSpecError(
                f"dilations: dilations above 1 ({list(self.dilations)}) need strides of 1, "
                f"as in TF; got strides {list(self.strides)}")
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
               dilations: IntOrInts | None = None, dtype: Any = "float32") -> "DepthwiseSpec":
        """A spec from TF's argument forms (`tf.nn.depthwise_conv2d`).

        Args:
            input_shape: 4 sizes in ``data_format``.
            filter_shape: ``[KH, KW, C, M]``.
            strides: an int, ``(rows, cols)``, or 4 ints in the layout (``[1, s, s, 1]`` NHWC).
            padding: ``"SAME"``, ``"VALID"``, TF's explicit 4x2 list in the layout,
                ``[[top, bottom], [left, right]]`` or ``[top, bottom, left, right]``.
            data_format: ``"NHWC"`` (default, also for None) or ``"NCHW"``.
            dilations: None, an int, ``(rows, cols)`` or 4 ints in the layout.
            dtype: float32, float16 or float64 (any NumPy dtype spelling).

        Raises:
            InvalidSpecError: naming the parameter and what is accepted.
        """
        data_format = "NHWC" if data_format is None else data_format
        if data_format not in DATA_FORMATS:
            raise InvalidSpecError(
                f"data_format: expected one of {', '.join(DATA_FORMATS)}, got {data_format!r}")
        layout = "[N, H, W, C]" if data_format == "NHWC" else "[N, C, H, W]"
        input_shape = _shape(input_shape, "input shape", layout)
        filter_shape = _shape(filter_shape, "filter shape",
                              "[filter_height, filter_width, in_channels, channel_multiplier]")
        stride_pair = _spatial_pair(strides, "strides", data_format)
        dilation_pair = _spatial_pair(dilations, "dilations", data_format)
        in_height, in_width = ((input_shape[1], input_shape[2]) if data_format == "NHWC"
                               else (input_shape[2], input_shape[3]))
        if isinstance(padding, str):
            mode = padding.upper()
            if mode == "SAME":
                pads = (*_same_padding(in_height, filter_shape[0], stride_pair[0], dilation_pair[0]),
                        *_same_padding(in_width, filter_shape[1], stride_pair[1], dilation_pair[1]))
            elif mode == "VALID":
                pads = (0, 0, 0, 0)
            else:
                raise InvalidSpecError(
                    f"padding: expected 'SAME', 'VALID' or an explicit list, got {padding!r}")
        else:
            mode = "EXPLICIT"
            pads = _explicit_padding(padding, data_format)
        return cls(input_shape=input_shape, filter_shape=filter_shape, strides=stride_pair,
                   pads=pads, dilations=dilation_pair, data_format=data_format,
                   dtype=dtype, padding_mode=mode)

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
        return self.filter_shape[0]

    @property
    def filter_width(self) -> int:
        """KW."""
        return self.filter_shape[1]

    @property
    def multiplier(self) -> int:
        """M, the channel multiplier."""
        return self.filter_shape[3]

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
        """Input, filter and output, each read or written once."""
        elements = (math.prod(self.input_shape) + math.prod(self.filter_shape)
                    + math.prod(self.output_shape))
        return elements * self.itemsize

    # --- identity ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that :meth:`from_dict` reads back."""
        return {
            "input_shape": list(self.input_shape), "filter_shape": list(self.filter_shape),
            "strides": list(self.strides), "pads": list(self.pads),
            "dilations": list(self.dilations), "data_format": self.data_format,
            "dtype": self.dtype, "padding_mode": self.padding_mode,
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
        return cls(**{name: data[name] for name in fields},
                   padding_mode=data.get("padding_mode", "EXPLICIT"))

    @property
    def workload_key(self) -> str:
        """A stable name of what is computed: equal specs (however the padding was given) share it."""
        canonical = {key: value for key, value in self.to_dict().items() if key != "padding_mode"}
        digest = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
        return f"dw-{digest[:16]}"

    def describe(self) -> str:
        """One line for people: layout, shapes, strides, padding, dtype and output shape."""
        shape = "x".join(str(size) for size in self.input_shape)
        window = "x".join(str(size) for size in self.filter_shape)
        text = f"{self.data_format} {shape} * {window} stride {self.strides[0]}x{self.strides[1]}"
        if self.dilations != (1, 1):
            text += f" dilation {self.dilations[0]}x{self.dilations[1]}"
        pad_text = self.padding_mode if self.padding_mode != "EXPLICIT" else f"pads {list(self.pads)}"
        return f"{text} {pad_text} {self.dtype} -> {'x'.join(str(size) for size in self.output_shape)}"
