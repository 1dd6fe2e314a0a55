"""The fused epilogue every op ends with: an optional per-channel bias, then an activation.

MobileNet blocks run convolution -> bias (a folded BatchNorm) -> ReLU6. Applied inside the
kernel's ``epilogue`` block, on the accumulator before it is stored, this costs no pass over
the output. The same definition serves TE (the kernels) and NumPy (the reference).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidSpecError

ACTIVATIONS = ("none", "relu", "relu6")


def check_activation(activation: Any, parameter: str = "activation") -> str:
    """`activation` as one of ``ACTIVATIONS`` (None means ``"none"``), or an InvalidSpecError."""
    if activation is None:
        return "none"
    if not isinstance(activation, str) or activation.lower() not in ACTIVATIONS:
        raise InvalidSpecError(
            f"{parameter}: expected one of None, {', '.join(repr(name) for name in ACTIVATIONS)}, got {activation!r}")
    return activation.lower()


def check_bias_flag(with_bias: Any, parameter: str = "bias") -> bool:
    """`with_bias` as a bool, or an InvalidSpecError."""
    if not isinstance(with_bias, (bool, np.bool_)):
        raise InvalidSpecError(f"{parameter}: expected True or False (whether a bias is added), got {with_bias!r}")
    return bool(with_bias)


def te_epilogue(value, bias_value, activation: str, dtype: str):
    """`value` (a TE expression in `dtype`, the accumulator's) plus `bias_value` (None: no bias),
    then the activation, still in `dtype`."""
    from tvm import tirx

    if bias_value is not None:
        value = value + bias_value.astype(dtype)
    if activation in ("relu", "relu6"):
        value = tirx.max(value, tirx.const(0, dtype))
    if activation == "relu6":
        value = tirx.min(value, tirx.const(6, dtype))
    return value


def numpy_epilogue(values: np.ndarray, bias: np.ndarray | None, activation: str, channel_axis: int) -> np.ndarray:
    """The same epilogue in float64 NumPy on `values`, whose channels lie on `channel_axis`."""
    result = np.asarray(values, dtype=np.float64)
    if bias is not None:
        shape = [1] * result.ndim
        shape[channel_axis] = -1
        result = result + np.asarray(bias, dtype=np.float64).reshape(shape)
    if activation in ("relu", "relu6"):
        result = np.maximum(result, 0.0)
    if activation == "relu6":
        result = np.minimum(result, 6.0)
    return result


def describe_epilogue(with_bias: bool, activation: str) -> str:
    """`` + bias + relu6`` and the like, for one-line descriptions ('' when there is none)."""
    parts = (["bias"] if with_bias else []) + ([activation] if activation != "none" else [])
    return "".join(f" + {part}" for part in parts)
