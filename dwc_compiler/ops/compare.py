"""How an op's output is compared with its float64 reference: per-dtype relative tolerances."""

from __future__ import annotations

import math

import numpy as np

# Relative tolerances that hold between TF and a float64 reference (golden/README.md).
TOLERANCES = {"float16": 2e-2, "float32": 1e-5, "float64": 1e-12}


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
