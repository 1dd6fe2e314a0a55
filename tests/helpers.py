"""One helper that checks dwc against the float64 reference, so each test case is one line."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

import dwc_compiler as dwc
from dwc_compiler.reference import TOLERANCES, max_relative_error, reference_depthwise

GOLDEN_PATH = Path(__file__).parent / "data" / "golden" / "tf_depthwise_cases.npz"


def random_inputs(spec: dwc.DepthwiseSpec, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random normal input and filter for `spec`."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(spec.input_shape).astype(spec.dtype),
            rng.standard_normal(spec.filter_shape).astype(spec.dtype))


def check_against_reference(input_shape, filter_shape, strides=1, padding="SAME", data_format="NHWC",
                            dilations=None, dtype="float32", target="host", seed=0) -> float:
    """Run dwc's API on fresh random data and assert it matches the float64 reference.

    Returns the max relative error, for messages.
    """
    spec = dwc.DepthwiseSpec.create(input_shape, filter_shape, strides, padding, data_format, dilations, dtype)
    data, weights = random_inputs(spec, seed)
    actual = dwc.depthwise_conv2d(data, weights, strides, padding, data_format, dilations, target=target)
    assert actual.shape == spec.output_shape and actual.dtype == np.dtype(dtype)
    error = max_relative_error(actual, reference_depthwise(spec, data, weights))
    assert error <= TOLERANCES[dtype], f"{spec.describe()} on {target}: max relative error {error:.3g}"
    return error


@lru_cache(maxsize=1)
def _golden_file():
    return np.load(GOLDEN_PATH)


def golden_count() -> int:
    """How many TF golden cases there are."""
    return int(_golden_file()["count"])


def golden_case(index: int) -> dict:
    """Golden case `index`: input, filter, TF's output, and TF's parameters."""
    data = _golden_file()
    params = json.loads(str(data[f"c{index}_params"]))
    return {"input": data[f"c{index}_input"], "filter": data[f"c{index}_filter"],
            "output": data[f"c{index}_output"], **params}


def check_golden(index: int, target: str = "host") -> None:
    """Assert that dwc reproduces TF's output for golden case `index` on `target`."""
    case = golden_case(index)
    actual = dwc.depthwise_conv2d(case["input"], case["filter"], case["strides"], case["padding"],
                                  data_format=case["data_format"], dilations=case["dilations"], target=target)
    expected = case["output"]
    assert actual.shape == expected.shape, f"case {index}: shape {actual.shape} != TF's {expected.shape}"
    assert actual.dtype == expected.dtype, f"case {index}: dtype {actual.dtype} != TF's {expected.dtype}"
    error = max_relative_error(actual, expected)
    assert error <= TOLERANCES[case["dtype"]], (
        f"case {index} ({case['data_format']} {case['dtype']} strides {case['strides']} padding "
        f"{case['padding']} dilations {case['dilations']}) on {target}: max relative error {error:.3g}")
