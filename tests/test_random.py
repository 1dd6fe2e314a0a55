"""Fresh random inputs against the float64 NumPy reference, across the op's whole surface."""

import pytest

from helpers import check_against_reference

CASES = [
    # input_shape, filter_shape, strides, padding, data_format, dilations, dtype
    ((1, 12, 12, 16), (3, 3, 16, 1), 1, "SAME", "NHWC", None, "float32"),
    ((2, 13, 11, 24), (3, 3, 24, 1), 2, "SAME", "NHWC", None, "float32"),
    ((1, 9, 10, 17), (3, 3, 17, 1), 1, "VALID", "NHWC", None, "float32"),
    ((1, 10, 10, 32), (5, 5, 32, 1), (2, 1), "SAME", "NHWC", None, "float32"),
    ((1, 8, 8, 8), (3, 3, 8, 3), 1, "SAME", "NHWC", None, "float32"),
    ((1, 15, 15, 16), (3, 3, 16, 2), 1, "SAME", "NHWC", (2, 2), "float32"),
    ((1, 11, 12, 16), (3, 2, 16, 1), 1, [[0, 0], [2, 1], [0, 3], [0, 0]], "NHWC", (1, 3), "float32"),
    ((1, 16, 12, 12), (3, 3, 16, 1), 1, "SAME", "NCHW", None, "float32"),
    ((2, 8, 13, 11), (3, 3, 8, 2), (1, 2), "VALID", "NCHW", None, "float32"),
    ((1, 24, 9, 9), (3, 3, 24, 1), 1, [[0, 0], [0, 0], [1, 1], [2, 0]], "NCHW", (2, 1), "float32"),
    ((1, 7, 7, 64), (3, 3, 64, 1), 1, "SAME", "NHWC", None, "float16"),
    ((1, 32, 7, 7), (3, 3, 32, 1), 2, "SAME", "NCHW", None, "float16"),
    ((1, 6, 6, 8), (3, 3, 8, 2), 1, "SAME", "NHWC", None, "float64"),
    ((1, 8, 6, 6), (2, 2, 8, 1), 2, "SAME", "NCHW", None, "float64"),
    ((1, 1, 1, 3), (3, 3, 3, 1), 1, "SAME", "NHWC", None, "float32"),
    ((1, 28, 28, 192), (3, 3, 192, 1), 2, "SAME", "NHWC", None, "float32"),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[4]}-{c[0]}-{c[1]}-s{c[2]}-{c[6]}" for c in CASES])
def test_matches_float64_reference(case):
    """dwc's output matches NumPy's float64 evaluation of the definition."""
    check_against_reference(*case)
