"""The float64 NumPy reference of TF's depthwise convolution, and how outputs are compared."""

from __future__ import annotations

import math

import numpy as np

from .spec import DepthwiseSpec

# Relative tolerances that hold between TF and a float64 reference (golden/README.md).
TOLERANCES = {"float16": 2e-2, "float32": 1e-5, "float64": 1e-12}


def reference_depthwise(spec: DepthwiseSpec, input: np.ndarray, filter: np.ndarray) -> np.ndarray:
    """`spec` computed in float64 by NumPy, straight from the op's definition.

    ``out[b, i, j, k*M + q] = sum_{di, dj} filter[di, dj, k, q] * padded[b, s0*i + d0*di, s1*j + d1*dj, k]``

    Returns:
        The output in ``spec.data_format``, float64.
    """
    data = np.asarray(input, dtype=np.float64)
    if spec.data_format == "NCHW":
        data = data.transpose(0, 2, 3, 1)
    weights = np.asarray(filter, dtype=np.float64)
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
    return out.transpose(0, 3, 1, 2) if spec.data_format == "NCHW" else out


def max_relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest ``|actual - expected|`` relative to the largest ``|expected|`` (inf on NaN)."""
    expected64 = np.asarray(expected, dtype=np.float64)
    scale = max(float(np.max(np.abs(expected64), initial=0.0)), 1e-30)
    worst = float(np.max(np.abs(np.asarray(actual, dtype=np.float64) - expected64), initial=0.0))
    return worst / scale if math.isfinite(worst) else math.inf


def matches_reference(actual: np.ndarray, expected: np.ndarray, dtype: str) -> tuple[bool, float]:
    """Whether `actual` is within `dtype`'s tolerance of `expected`, and the error itself."""
    error = max_relative_error(actual, expected)
    return error <= TOLERANCES[dtype], error
