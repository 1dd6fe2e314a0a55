"""depthwise_conv2d's first lookup, by the filter object: taken for a layer's repeated calls, and
never trusted where the arrays or parameters differ from the kernel it holds."""

import gc

import numpy as np
import pytest

import dwc_compiler as dwc
from dwc_compiler import api
from dwc_compiler.calls_by_weights import CallsByWeights, is_plain
from dwc_compiler.ops.compare import max_relative_error

from helpers import random_inputs

SPEC = dwc.DepthwiseSpec.create((1, 12, 12, 32), (3, 3, 32, 1), 1, "SAME")


class _NoLookupByShapes(dict):
    """A stand-in for ``api._lean_calls`` that fails any lookup by shapes."""

    def __getitem__(self, key):
        pytest.fail("looked the kernel up by shapes")


def test_repeated_calls_find_the_kernel_by_the_filter(monkeypatch):
    """After the first call, a layer's calls (same filter object, same parameters) take the
    lookup by filter: no lookup by shapes, no compiling, the reference result."""
    data, weights = random_inputs(SPEC)
    expected = SPEC.reference(data, weights)
    api.clear_kernel_cache()
    dwc.depthwise_conv2d(data, weights, 1, "SAME")
    monkeypatch.setattr(api, "_lean_calls", _NoLookupByShapes())
    monkeypatch.setattr(api, "_compile_for", lambda *args: pytest.fail("compiled a cached kernel again"))
    for _ in range(3):
        assert max_relative_error(dwc.depthwise_conv2d(data, weights, 1, "SAME"), expected) < 1e-5


def test_one_filter_for_two_input_sizes_alternates_correctly():
    """One filter object with inputs of two sizes: each call gets its own kernel's result (the
    kept kernel refuses the other size), and the filter is then marked as shared, so that its
    calls go by shapes instead of a refused try each."""
    data, weights = random_inputs(SPEC)
    small = data[:, :6, :6].copy()
    small_spec = dwc.DepthwiseSpec.create(small.shape, weights.shape, 1, "SAME")
    api.clear_kernel_cache()
    for _ in range(2):
        for case, spec in ((data, SPEC), (small, small_spec)):
            assert max_relative_error(dwc.depthwise_conv2d(case, weights, 1, "SAME"),
                                      spec.reference(case, weights)) < 1e-5
    entry = api._calls_by_filter.entries[id(weights)]
    assert entry[0]() is weights and entry[2] is None


def test_other_parameters_with_the_kept_filter_get_their_own_kernel():
    """The same filter object with another stride, padding or an ndarray of strides (whose ``==``
    is an array) is not served by the kept kernel."""
    data, weights = random_inputs(SPEC)
    api.clear_kernel_cache()
    for strides, padding in ((1, "SAME"), (2, "SAME"), (1, "VALID"), (np.array([2, 2]), "SAME"), (1, "SAME")):
        spec = dwc.DepthwiseSpec.create(SPEC.input_shape, weights.shape, strides, padding)
        assert max_relative_error(dwc.depthwise_conv2d(data, weights, strides, padding),
                                  spec.reference(data, weights)) < 1e-5


def test_a_filter_reshaped_in_place_is_not_trusted():
    """A filter whose shape is changed in place (same object) is refused by the kept kernel and
    named by the spec, not run as the old shape."""
    data, weights = random_inputs(SPEC)
    api.clear_kernel_cache()
    dwc.depthwise_conv2d(data, weights, 1, "SAME")
    weights.shape = (3, 3, 1, 32)
    with pytest.raises(dwc.InvalidSpecError, match="filter"):
        dwc.depthwise_conv2d(data, weights, 1, "SAME")


def test_entries_do_not_keep_filters_alive():
    """A filter freed by the caller leaves no entry behind (the entry holds a weak reference)."""
    data, weights = random_inputs(SPEC)
    api.clear_kernel_cache()
    dwc.depthwise_conv2d(data, weights, 1, "SAME")
    key = id(weights)
    assert key in api._calls_by_filter.entries
    del weights
    gc.collect()
    assert key not in api._calls_by_filter.entries


def test_keep_takes_plain_parameters_only():
    """Parameters whose ``==`` is not a plain bool (an ndarray) are not kept; objects without weak
    references and NumPy views are not kept either; a second call for the same weights marks
    them shared."""
    calls = CallsByWeights()
    weights = np.zeros(3, np.float32)
    calls.keep(weights, (np.array([1, 1]), "SAME"), print)
    assert calls.entries == {}
    calls.keep((1, 2), (1, "SAME"), print)  # a tuple cannot be weakly referenced
    assert calls.entries == {}
    calls.keep(weights, (1, [[0, 0], [1, 1]], None), print)
    assert calls.entries[id(weights)][2] is print
    calls.keep(weights, (1, [[0, 0], [1, 1]], None), repr)
    assert calls.entries[id(weights)][2] is None
    assert is_plain((1, "SAME", None, True, [[0, 0], (1, 1)])) and not is_plain((1.5,))
    calls.keep(weights[1:], (1, "SAME"), print)  # a view: made afresh by callers that slice
    assert list(calls.entries) == [id(weights)]


def test_separable_calls_find_the_kernel_by_the_depthwise_filter(monkeypatch):
    """separable_conv2d's repeated calls (with a bias) take the lookup by the depthwise filter;
    the same filters with an input of another size get that size's kernel, before and after."""
    spec = dwc.SeparableSpec.create((1, 12, 12, 16), (3, 3, 16, 1), (1, 1, 16, 24), 1, "SAME",
                                    with_pointwise_bias=True)
    data, depthwise_filter, pointwise_filter, bias = random_inputs(spec)
    small = data[:, :6, :6].copy()
    small_spec = dwc.SeparableSpec.create(small.shape, (3, 3, 16, 1), (1, 1, 16, 24), 1, "SAME",
                                          with_pointwise_bias=True)
    api.clear_kernel_cache()

    def run(case):
        return dwc.separable_conv2d(case, depthwise_filter, pointwise_filter, 1, "SAME", pointwise_bias=bias)

    expected = spec.reference(data, depthwise_filter, pointwise_filter, bias)
    run(data)
    with monkeypatch.context() as patched:
        patched.setattr(api, "_separable_key", lambda *args: pytest.fail("looked the kernel up by shapes"))
        for _ in range(2):
            assert max_relative_error(run(data), expected) < 1e-5
    for case, case_spec in ((small, small_spec), (data, spec), (small, small_spec)):
        assert max_relative_error(run(case), case_spec.reference(case, depthwise_filter, pointwise_filter,
                                                                 bias)) < 1e-5
