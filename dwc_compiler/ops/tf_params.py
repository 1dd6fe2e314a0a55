"""TensorFlow's argument forms, read and checked once for every op.

Shapes, strides, dilations, padding (``"SAME"``, ``"VALID"`` or an explicit list) and dtypes as
``tf.nn`` accepts them; each reader raises :class:`InvalidSpecError` naming the parameter and
what would have been accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import numpy as np

from ..errors import InvalidSpecError

DATA_FORMATS = ("NHWC", "NCHW")
DTYPES = ("float32", "float16", "float64")
PADDING_MODES = ("SAME", "VALID")

PaddingArg = Union[str, Sequence[Any]]
IntOrInts = Union[int, Sequence[int]]


def as_int(value: Any, parameter: str) -> int:
    """`value` as a Python int, or an InvalidSpecError naming `parameter`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidSpecError(f"{parameter}: expected an integer, got {value!r}")
    return int(value)


def int_tuple(values: Any, parameter: str) -> tuple[int, ...]:
    """`values` as a tuple of ints, or an InvalidSpecError naming `parameter`."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise InvalidSpecError(f"{parameter}: expected a list of integers, got {values!r}")
    return tuple(as_int(v, parameter) for v in values)


def positive_shape(values: Any, parameter: str, layout: str, rank: int = 4) -> tuple[int, ...]:
    """A shape of `rank` sizes >= 1, described as `layout` in errors."""
    shape = int_tuple(values, parameter)
    if len(shape) != rank:
        raise InvalidSpecError(
            f"{parameter}: expected {rank} dimensions {layout}, got {len(shape)} ({list(shape)})")
    if any(size < 1 for size in shape):
        raise InvalidSpecError(f"{parameter}: every dimension must be >= 1 ({layout}), got {list(shape)}")
    return shape


def layout_of(data_format: str) -> str:
    """The dimension names of a data format, for messages."""
    return "[N, H, W, C]" if data_format == "NHWC" else "[N, C, H, W]"


def check_data_format(data_format: str | None) -> str:
    """`data_format` (None means NHWC, as in TF), or an InvalidSpecError."""
    data_format = "NHWC" if data_format is None else data_format
    if data_format not in DATA_FORMATS:
        raise InvalidSpecError(f"data_format: expected one of {', '.join(DATA_FORMATS)}, got {data_format!r}")
    return data_format


def spatial_pair(values: IntOrInts | None, parameter: str, data_format: str) -> tuple[int, int]:
    """Strides or dilations as (rows, cols) from TF's accepted forms.

    Accepted: one int; two ints (rows, cols); four ints in the data format's layout whose
    batch and channel entries are 1 (TF's ``[1, s, s, 1]`` for NHWC, ``[1, 1, s, s]`` for NCHW).
    """
    if values is None:
        return (1, 1)
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        pair: tuple[int, ...] = (int(values), int(values))
    else:
        numbers = int_tuple(values, parameter)
        if len(numbers) == 2:
            pair = numbers
        elif len(numbers) == 4:
            if data_format == "NHWC":
                outer, pair = (numbers[0], numbers[3]), numbers[1:3]
            else:
                outer, pair = (numbers[0], numbers[1]), numbers[2:4]
            if outer != (1, 1):
                example = "[1, 2, 2, 1]" if data_format == "NHWC" else "[1, 1, 2, 2]"
                raise InvalidSpecError(
                    f"{parameter}: the batch and channel entries must be 1 for {data_format} "
                    f"(e.g. {example}), got {list(numbers)}")
        else:
            raise InvalidSpecError(
                f"{parameter}: expected 1, 2 (rows, cols) or 4 ({data_format}) integers, "
                f"got {len(numbers)} ({list(numbers)})")
    if any(v < 1 for v in pair):
        raise InvalidSpecError(f"{parameter}: every value must be >= 1, got {list(pair)}")
    return (pair[0], pair[1])


def explicit_padding(padding: Any, data_format: str) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) from an explicit padding argument.

    Accepted: TF's 4x2 list in the data format's layout (batch and channel pairs must be
    zero), a 2x2 list ``[[top, bottom], [left, right]]``, or four numbers
    ``[top, bottom, left, right]``.
    """
    try:
        array = np.asarray(padding)
    except ValueError as exc:  # ragged lists and the like
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
                f"padding: the batch and channel pairs must be [0, 0] for {data_format}, got {array.tolist()}")
        amounts = array[list(spatial_rows)].reshape(4)
    else:
        amounts = array.reshape(4)
    if (amounts < 0).any():
        raise InvalidSpecError(f"padding: amounts must be >= 0, got {array.tolist()}")
    return tuple(int(v) for v in amounts)  # type: ignore[return-value]


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TF's SAME rule: output ceil(size / stride); the extra padding goes after (bottom/right)."""
    effective_kernel = (kernel - 1) * dilation + 1
    out_size = -(-size // stride)
    total = max((out_size - 1) * stride + effective_kernel - size, 0)
    return total // 2, total - total // 2


def resolve_padding(padding: PaddingArg, data_format: str, in_size: tuple[int, int], window: tuple[int, int],
                    strides: tuple[int, int], dilations: tuple[int, int]) -> tuple[str, tuple[int, int, int, int]]:
    """(mode, (top, bottom, left, right)) from TF's padding argument for an input of
    `in_size` (rows, cols) and a filter `window` (rows, cols)."""
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "SAME":
            return mode, (*same_padding(in_size[0], window[0], strides[0], dilations[0]),
                          *same_padding(in_size[1], window[1], strides[1], dilations[1]))
        if mode == "VALID":
            return mode, (0, 0, 0, 0)
        raise InvalidSpecError(f"padding: expected 'SAME', 'VALID' or an explicit list, got {padding!r}")
    return "EXPLICIT", explicit_padding(padding, data_format)


def canonical_dtype(dtype: Any, parameter: str = "dtype") -> str:
    """The dtype's name if dwc supports it, else an InvalidSpecError naming `parameter`."""
    try:
        name = np.dtype(dtype).name
    except TypeError as exc:
        raise InvalidSpecError(f"{parameter}: unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}") from exc
    if name not in DTYPES:
        raise InvalidSpecError(f"{parameter}: {name} is not supported; expected one of {', '.join(DTYPES)}")
    return name
