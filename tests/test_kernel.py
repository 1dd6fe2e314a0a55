"""Kernel calls on any array a user may pass: misaligned, non-contiguous, read-only, DLPack."""

import types

import numpy as np
import pytest

import dwc_compiler as dwc
from dwc_compiler.ops.compare import max_relative_error

from helpers import random_inputs

SPEC = dwc.DepthwiseSpec.create((1, 12, 12, 32), (3, 3, 32, 1), 1, "SAME")


@pytest.fixture(scope="module")
def kernel():
    return dwc.build(SPEC, "host")


def _expected(data, weights):
    return SPEC.reference(data, weights)


def _misaligned(array: np.ndarray, offset_elements: int = 1) -> np.ndarray:
    backing = np.empty(array.size + offset_elements, array.dtype)
    view = backing[offset_elements:].reshape(array.shape)
    view[...] = array
    return view


@pytest.mark.parametrize("offset", [1, 2, 3, 5, 15])
def test_misaligned_arrays_give_correct_results(kernel, offset):
    """Arrays whose data is not 64-byte aligned (a view offset by some elements) run correctly."""
    data, weights = random_inputs(SPEC)
    shifted_data, shifted_weights = _misaligned(data, offset), _misaligned(weights, offset)
    assert shifted_data.ctypes.data % 64 != 0
    out = _misaligned(np.zeros(SPEC.output_shape, np.float32), offset)
    result = kernel(shifted_data, shifted_weights, out=out)
    assert result is out
    assert max_relative_error(out, _expected(data, weights)) < 1e-5


def test_non_contiguous_and_read_only_inputs(kernel):
    """Transposed views, strided slices and read-only arrays are accepted."""
    data, weights = random_inputs(SPEC)
    nchw_backing = np.ascontiguousarray(data.transpose(0, 3, 1, 2))
    transposed = nchw_backing.transpose(0, 2, 3, 1)
    assert not transposed.flags.c_contiguous
    strided = np.repeat(data, 2, axis=3)[..., ::2]
    read_only = data.copy()
    read_only.flags.writeable = False
    expected = _expected(data, weights)
    for argument in (transposed, strided, read_only):
        assert max_relative_error(kernel(argument, weights), expected) < 1e-5


def test_unaligned_byte_buffer(kernel):
    """Data placed at an odd byte address (not even element-aligned) is copied, not crashed on."""
    data, weights = random_inputs(SPEC)
    raw = np.zeros(data.nbytes + 1, np.uint8)
    raw[1:] = np.frombuffer(data.tobytes(), np.uint8)
    odd = np.frombuffer(raw.data, dtype=np.float32, count=data.size, offset=1).reshape(data.shape)
    assert not odd.flags.writeable or odd.ctypes.data % 4 != 0
    assert max_relative_error(kernel(odd, weights), _expected(data, weights)) < 1e-5


def test_dlpack_tensor(kernel):
    """Anything speaking DLPack on the CPU is read without a copy."""
    data, weights = random_inputs(SPEC)

    class DlpackOnly:
        def __init__(self, array):
            self._array = array

        def __dlpack__(self, **kwargs):
            return self._array.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self._array.__dlpack_device__()

    assert max_relative_error(kernel(DlpackOnly(data), DlpackOnly(weights)), _expected(data, weights)) < 1e-5


def test_pytorch_tensors_through_the_api():
    """PyTorch CPU tensors through depthwise_conv2d, a second call on the cached kernel included:
    contiguous ones go to the compiled function as they are, a channels_last view of an NCHW
    tensor (strides the kernel cannot take) is copied, and a float64 filter is named."""
    torch = pytest.importorskip("torch")
    data, weights = random_inputs(SPEC)
    expected = _expected(data, weights)
    tensor, filter_tensor = torch.from_numpy(data), torch.from_numpy(weights)
    for _ in range(2):
        assert max_relative_error(dwc.depthwise_conv2d(tensor, filter_tensor, 1, "SAME"), expected) < 1e-5
    strided = torch.from_numpy(np.ascontiguousarray(data.transpose(0, 3, 1, 2))).permute(0, 2, 3, 1)
    assert not strided.is_contiguous()
    assert max_relative_error(dwc.depthwise_conv2d(strided, filter_tensor, 1, "SAME"), expected) < 1e-5
    with pytest.raises(dwc.InvalidArgumentError, match="filter"):
        dwc.depthwise_conv2d(tensor, filter_tensor.double(), 1, "SAME")


def test_wrong_shape_and_dtype_name_the_argument(kernel):
    """A kernel refuses arrays of another shape or dtype with an InvalidArgumentError."""
    data, weights = random_inputs(SPEC)
    with pytest.raises(dwc.InvalidArgumentError, match="input: expected shape"):
        kernel(data[:, :-1], weights)
    with pytest.raises(dwc.InvalidArgumentError, match="filter: expected dtype float32"):
        kernel(data, weights.astype(np.float64))
    with pytest.raises(dwc.InvalidArgumentError, match="out:"):
        kernel(data, weights, out=np.zeros((1, 1), np.float32))


def test_api_caches_kernels_and_checks_dtypes():
    """depthwise_conv2d compiles once per spec and target; mixed dtypes are refused."""
    from dwc_compiler import api

    data, weights = random_inputs(SPEC)
    dwc.depthwise_conv2d(data, weights, [1, 1, 1, 1], "SAME")
    cached = len(api._kernels)
    dwc.depthwise_conv2d(data, weights, [1, 1, 1, 1], "SAME")
    assert len(api._kernels) == cached
    # A filter of another dtype than the cached kernel's (the compiled function refuses it and
    # the checked path names it), and one on a first call (refused before compiling).
    with pytest.raises(dwc.InvalidArgumentError, match="filter: expected dtype float32, got float64"):
        dwc.depthwise_conv2d(data, weights.astype(np.float64), [1, 1, 1, 1], "SAME")
    api.clear_kernel_cache()
    with pytest.raises(dwc.InvalidArgumentError, match="filter: dtype float64 differs"):
        dwc.depthwise_conv2d(data, weights.astype(np.float64), [1, 1, 1, 1], "SAME")
    with pytest.raises(dwc.InvalidSpecError, match="strides"):
        dwc.depthwise_conv2d(data, weights, [1, 1, 1], "SAME")


@pytest.mark.parametrize("strides, padding, dilations", [
    (1, "SAME", None), ([1, 1, 1, 1], "SAME", [1, 1]), ((1, 1), "VALID", (1, 1)),
    (np.array([1, 1]), "SAME", None), (1, [[0, 0], [1, 1], [1, 1], [0, 0]], None)],
    ids=["int", "lists", "tuples", "ndarray", "nested-padding"])
def test_cached_calls_take_the_lean_path(monkeypatch, strides, padding, dilations):
    """A second call with the same parameters, in any of TF's forms (a nested explicit padding
    too), reuses the cached kernel without compiling, found by the lean path's inline key."""
    from dwc_compiler import api

    data, weights = random_inputs(SPEC)
    expected = dwc.depthwise_conv2d(data, weights, strides, padding, dilations=dilations)
    monkeypatch.setattr(api, "_compile_for", lambda *args: pytest.fail("compiled a cached kernel again"))
    monkeypatch.setattr(api, "_array_of", lambda *args: pytest.fail("left the lean path"))
    np.testing.assert_array_equal(dwc.depthwise_conv2d(data, weights, strides, padding, dilations=dilations),
                                  expected)


def test_lean_path_follows_the_filter_size_and_dtype(monkeypatch):
    """The lean path keys on the arrays' shapes and the parameters; calls that alternate the
    filter's size (3x3, 5x5) or the dtype (float32, float64) on one input shape each get their
    own kernel's result (for another dtype, the last kernel's call refuses the arrays and the
    full path runs theirs, which the lean path then keeps), and a wrong filter is still named."""
    from dwc_compiler import api

    data, weights = random_inputs(SPEC)
    wide = np.random.default_rng(3).standard_normal((5, 5, 32, 1)).astype(np.float32)
    spec_wide = dwc.DepthwiseSpec.create(SPEC.input_shape, wide.shape, 1, "SAME")
    spec_double = dwc.DepthwiseSpec.create(SPEC.input_shape, weights.shape, 1, "SAME", dtype="float64")
    cases = [(data, weights, SPEC), (data, wide, spec_wide), (data.astype(np.float64), weights.astype(np.float64),
                                                              spec_double)]
    for _ in range(2):
        for case_data, case_weights, spec in cases:
            result = dwc.depthwise_conv2d(case_data, case_weights, 1, "SAME")
            assert result.dtype == case_data.dtype
            assert max_relative_error(result, spec.reference(case_data, case_weights)) < 1e-5
    with pytest.raises(dwc.InvalidArgumentError, match="filter: expected dtype float64, got float32"):
        dwc.depthwise_conv2d(data.astype(np.float64), weights, 1, "SAME")
    monkeypatch.setattr(api, "_array_of", lambda *args: pytest.fail("left the lean path"))
    for case_data, case_weights, spec in cases[1:]:  # the 5x5 kernel, and the float64 one last used
        assert max_relative_error(dwc.depthwise_conv2d(case_data, case_weights, 1, "SAME"),
                                  spec.reference(case_data, case_weights)) < 1e-5


def test_output_buffer_reused_after_a_refused_fast_call(kernel):
    """When the compiled function refuses an array (here a filter in another memory order, which
    the checked path copies), the call still reuses the output buffers the caller dropped: the
    fast path's hold on the one it took is let go first (inside MobileNetV2, every call
    allocated a fresh output, MBs of new pages for the large layers). In a loop keeping its last
    result, a hold left behind would make a third buffer."""
    data, weights = random_inputs(SPEC)
    transposed = np.asfortranarray(weights)  # the same values, not C-contiguous
    expected = _expected(data, weights)
    result = kernel(data, transposed)
    made = kernel._outputs.made
    for _ in range(6):
        result = kernel(data, transposed)
        assert max_relative_error(result, expected) < 1e-5
    assert kernel._outputs.made - made <= 1


def test_results_never_alias_arrays_the_caller_still_holds(kernel):
    """Output buffers are reused only once the caller dropped every array and view of them."""
    data, weights = random_inputs(SPEC)
    first = kernel(data, weights)
    second = kernel(data, weights)
    assert not np.shares_memory(first, second)
    view = second[0, 1:]
    del second
    third = kernel(data, weights)
    assert not np.shares_memory(view, third)
    expected = _expected(data, weights)
    for result in (first, third):
        assert max_relative_error(result, expected) < 1e-5
    assert max_relative_error(view, expected[0, 1:]) < 1e-5


def test_depthwise_and_separable_kernel_give_the_api_kernels(monkeypatch):
    """depthwise_kernel / separable_kernel return the kernel the API call runs for the same
    arguments (compiled once, shared), whose call gives the API's result; a bad argument is
    named as the API names it."""
    from dwc_compiler import api

    rng = np.random.default_rng(1)
    data, weights = random_inputs(SPEC)
    bias = rng.random(32).astype(np.float32)
    with pytest.raises(dwc.InvalidSpecError, match="activation"):
        dwc.depthwise_kernel(data, weights, 1, "SAME", activation="gelu")
    kernel = dwc.depthwise_kernel(data, weights, 1, "SAME", bias=bias, activation="relu6")
    monkeypatch.setattr(api, "_compile_for", lambda *args: pytest.fail("compiled a cached kernel again"))
    expected = dwc.depthwise_conv2d(data, weights, 1, "SAME", bias=bias, activation="relu6")
    np.testing.assert_array_equal(kernel.call(data, weights, bias), expected)
    reference = np.clip(SPEC.reference(data, weights) + bias, 0, 6)
    assert max_relative_error(expected, reference) < 1e-5

    pointwise = rng.random((1, 1, 32, 8)).astype(np.float32)
    separable = dwc.separable_kernel(data, weights, pointwise, 1, "SAME", pointwise_bias=bias[:8])
    monkeypatch.setattr(api, "_cached_build", lambda *args: pytest.fail("compiled a cached kernel again"))
    fused = dwc.separable_conv2d(data, weights, pointwise, 1, "SAME", pointwise_bias=bias[:8])
    np.testing.assert_array_equal(separable.call(data, weights, pointwise, bias[:8]), fused)
    assert max_relative_error(fused, SPEC.reference(data, weights) @ pointwise[0, 0] + bias[:8]) < 1e-5


def test_a_tensor_off_the_cpu_is_named():
    """A PyTorch tensor DLPack cannot hand to the CPU (here on the meta device) is named, not a
    C++ stack from PyTorch's packing."""
    torch = pytest.importorskip("torch")
    with pytest.raises(dwc.InvalidArgumentError, match="input: cannot read this Tensor through DLPack"):
        dwc.depthwise_conv2d(torch.empty(1, 12, 12, 32, device="meta"), torch.randn(3, 3, 32, 1), 1, "SAME")


def test_a_loop_keeping_its_last_result_allocates_no_output(kernel):
    """In the usual loop ``y = kernel(x, w)`` the last result is still held while the next call
    runs: the kernel's two output buffers then alternate (no new array after the first two),
    and no call writes into the result the caller holds."""
    data, weights = random_inputs(SPEC)
    other = data[:, ::-1].copy()
    expected, expected_other = _expected(data, weights), _expected(other, weights)
    made = kernel._outputs.made
    previous, previous_expected = kernel(data, weights), expected
    for step in range(6):
        source, source_expected = (other, expected_other) if step % 2 == 0 else (data, expected)
        result = kernel(source, weights)
        assert not np.shares_memory(previous, result)
        assert max_relative_error(previous, previous_expected) < 1e-5  # not written while held
        assert max_relative_error(result, source_expected) < 1e-5
        previous, previous_expected = result, source_expected
        del result
    assert kernel._outputs.made - made <= 2


@pytest.mark.parametrize("way", ["call", "call_exact"])
def test_lean_calls_hand_out_only_free_outputs(kernel, way):
    """The lean calls test the kept outputs inline: a dropped result's buffer serves the next
    call (no new array), while a result held through a view, or by a variable, is never written."""
    call = getattr(kernel, way)
    data, weights = random_inputs(SPEC)
    other = data[:, ::-1].copy()
    expected, expected_other = _expected(data, weights), _expected(other, weights)
    call(data, weights)
    made = kernel._outputs.made
    for _ in range(3):
        assert max_relative_error(call(data, weights), expected) < 1e-5
    assert kernel._outputs.made == made  # each dropped result's buffer taken again
    view = call(data, weights)[0, 1:]
    held = call(data, weights)
    assert max_relative_error(call(other, weights), expected_other) < 1e-5  # a third buffer
    assert max_relative_error(view, expected[0, 1:]) < 1e-5 and max_relative_error(held, expected) < 1e-5


def test_calls_by_argument_name_and_wrong_counts(kernel):
    """``kernel.call`` takes the spec's input arguments by position or by name; a missing array
    is named (the first one missing), as are too many, not a Python signature error."""
    data, weights = random_inputs(SPEC)
    expected = _expected(data, weights)
    assert max_relative_error(kernel.call(input=data, filter=weights), expected) < 1e-5
    assert max_relative_error(kernel.call(data, filter=weights), expected) < 1e-5
    with pytest.raises(dwc.InvalidArgumentError, match=r"^filter: missing; this kernel takes 2 arrays \(input, filter\)"):
        kernel.call(data)
    with pytest.raises(dwc.InvalidArgumentError, match=r"^input: missing"):
        kernel.call(filter=weights)
    with pytest.raises(dwc.InvalidArgumentError, match="this kernel takes 2 arrays .* got 3"):
        kernel.call(data, weights, weights)


def test_lean_call_parameters_avoid_the_templates_own_names():
    """Argument names that are no identifiers, keywords, or names the lean call's template uses
    itself (``out``, ``result``, ``first``...) become positional parameters of other names, and
    the call still computes and names wrong counts; the checked form takes the same names."""
    from dwc_compiler.runtime.lean_call import MISSING, make_checked_call, make_lean_call

    seen = []

    def invoke(*arrays):
        seen.append(arrays)

    def checked(inputs, out):
        return ("checked", inputs)

    names = ["out", "first", "class", "two words", "bias"]
    outputs = types.SimpleNamespace(kept=[], take=lambda offset: ("result", "argument"))
    call, call_exact = make_lean_call(names, invoke, outputs, checked)
    assert call(1, 2, 3, 4, 5) == "result" and seen == [(1, 2, 3, 4, 5, "argument")]
    assert call(1, 2, 3, 4, bias=6) == "result" and seen[-1] == (1, 2, 3, 4, 6, "argument")
    assert call(1, 2) == ("checked", (1, 2, MISSING, MISSING, MISSING))
    assert call_exact(1, 2, 3, 4, 7) == "result" and seen[-1] == (1, 2, 3, 4, 7, "argument")
    checked_call, checked_exact = make_checked_call(names, checked)
    assert checked_call(1, bias=2) == ("checked", (1, MISSING, MISSING, MISSING, 2))
    assert checked_exact(1, 2, 3, 4, 5) == ("checked", (1, 2, 3, 4, 5))
