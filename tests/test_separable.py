"""`separable_conv2d` (TF's depthwise-separable convolution, one fused kernel) against references:
the float64 NumPy reference on fresh random inputs, TensorFlow's own depthwise results (the golden
cases) followed by the 1x1 product, and PyTorch; on every kind of target; and its errors."""

import shutil

import numpy as np
import pytest

import dwc_compiler as dwc
from dwc_compiler.ops.compare import TOLERANCES, max_relative_error

from helpers import golden_case, golden_count, random_inputs, skip_unless_this_cpu_runs

LAYOUTS = ["NHWC", "NCHW"]


def check_separable(input_hwc, filter_hwcm, out_channels, strides=1, padding="SAME", data_format="NHWC",
                    dilations=None, dtype="float32", target="host", *, depthwise_bias=False,
                    depthwise_activation=None, pointwise_bias=False, pointwise_activation=None, batch=1,
                    seed=0) -> float:
    """Run ``dwc.separable_conv2d`` on fresh random data and assert it matches the float64
    reference (the depthwise reference, then the 1x1 product); `input_hwc` is (H, W, C)."""
    height, width, channels = input_hwc
    input_shape = (batch, height, width, channels) if data_format == "NHWC" else (batch, channels, height, width)
    pointwise_shape = (1, 1, filter_hwcm[2] * filter_hwcm[3], out_channels)
    spec = dwc.SeparableSpec.create(input_shape, filter_hwcm, pointwise_shape, strides, padding, data_format,
                                    dilations, dtype, with_depthwise_bias=depthwise_bias,
                                    depthwise_activation=depthwise_activation, with_pointwise_bias=pointwise_bias,
                                    pointwise_activation=pointwise_activation)
    data, depthwise_filter, pointwise_filter, *biases = random_inputs(spec, seed)
    given = list(biases)
    actual = dwc.separable_conv2d(data, depthwise_filter, pointwise_filter, strides, padding, data_format, dilations,
                                  target=target, depthwise_bias=given.pop(0) if depthwise_bias else None,
                                  depthwise_activation=depthwise_activation,
                                  pointwise_bias=given.pop(0) if pointwise_bias else None,
                                  pointwise_activation=pointwise_activation)
    assert actual.shape == spec.output_shape and actual.dtype == np.dtype(dtype)
    error = max_relative_error(actual, spec.reference(data, depthwise_filter, pointwise_filter, *biases))
    assert error <= TOLERANCES[dtype], f"{spec.describe()} on {target}: max relative error {error:.3g}"
    return error


# (input H, W, C), depthwise filter, out channels, strides, padding, dilations: one line per case.
CASES = [
    ((10, 10, 16), (3, 3, 16, 1), 24, 1, "SAME", None),
    ((11, 9, 16), (3, 3, 16, 1), 32, 2, "SAME", None),
    ((12, 12, 8), (5, 5, 8, 1), 12, 1, "VALID", None),
    ((13, 11, 8), (3, 3, 8, 2), 20, 1, "SAME", None),
    ((12, 12, 12), (3, 3, 12, 1), 8, 1, "SAME", (2, 2)),
    ((9, 10, 8), (3, 2, 8, 3), 5, (2, 1), [[2, 1], [0, 3]], None),
    ((7, 7, 24), (3, 3, 24, 1), 40, 1, "SAME", None),
]


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{'x'.join(map(str, case[0]))}-k{case[1][0]}x{case[1][1]}"
                         f"-m{case[1][3]}-o{case[2]}-s{case[3]}")
def test_tf_semantics_on_host(data_format, case):
    """Strides (equal, unequal), dilation, SAME/VALID/explicit padding, multipliers 1-3, output
    channels not a multiple of the vector width, both layouts: equal to the reference."""
    input_hwc, filter_hwcm, out_channels, strides, padding, dilations = case
    check_separable(input_hwc, filter_hwcm, out_channels, strides, padding, data_format, dilations)


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("depthwise_bias, depthwise_activation, pointwise_bias, pointwise_activation", [
    (False, None, False, None), (True, "relu6", False, None), (True, "relu", True, "relu6"),
    (False, None, True, "relu"), (False, "relu6", True, None), (True, None, False, "relu6")],
    ids=["plain", "depthwise-epilogue", "both-epilogues", "pointwise-epilogue", "relu6-then-bias", "bias-then-relu6"])
def test_biases_and_activations(data_format, depthwise_bias, depthwise_activation, pointwise_bias,
                                pointwise_activation):
    """Each step's bias and activation, alone and together (stride 2, batch 2): every bias and
    activation appears after each step in some case, and with and without the other step's."""
    check_separable((9, 10, 16), (3, 3, 16, 1), 24, 2, "SAME", data_format, batch=2,
                    depthwise_bias=depthwise_bias, depthwise_activation=depthwise_activation,
                    pointwise_bias=pointwise_bias, pointwise_activation=pointwise_activation)


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_other_dtypes(data_format, dtype):
    """float64, and float16 (summed in float32, the depthwise result rounded to float16 as TF's
    two ops would) with both epilogues."""
    check_separable((8, 8, 16), (3, 3, 16, 1), 16, 1, "SAME", data_format, dtype=dtype, depthwise_bias=True,
                    depthwise_activation="relu6", pointwise_bias=True)


@pytest.mark.parametrize("index", [i for i in range(golden_count()) if i % 5 == 0])
def test_follows_tensorflow_depthwise_results(index):
    """For TF golden cases (every fifth), dwc's separable kernel equals TensorFlow's own
    depthwise output followed by the 1x1 product in float64: TF's semantics of the first step
    (padding, strides, dilations, layouts, dtypes) hold inside the fused kernel."""
    case = golden_case(index)
    data_format = case["data_format"]
    channels = case["filter"].shape[2] * case["filter"].shape[3]
    pointwise = np.random.default_rng(index).standard_normal((1, 1, channels, 6)).astype(case["dtype"])
    actual = dwc.separable_conv2d(case["input"], case["filter"], pointwise, case["strides"], case["padding"],
                                  data_format, case["dilations"])
    tf_depthwise = case["output"].astype(np.float64)
    if data_format == "NHWC":
        expected = tf_depthwise @ pointwise[0, 0].astype(np.float64)
    else:
        expected = np.einsum("nkhw,ko->nohw", tf_depthwise, pointwise[0, 0].astype(np.float64))
    assert actual.shape == expected.shape and actual.dtype == np.dtype(case["dtype"])
    error = max_relative_error(actual, expected)
    assert error <= TOLERANCES[case["dtype"]], f"golden case {index} ({data_format} {case['dtype']}): {error:.3g}"


@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_matches_pytorch_depthwise_then_pointwise(memory_format):
    """A MobileNet block in PyTorch (depthwise conv2d groups=C + bias, ReLU6, 1x1 conv2d + bias)
    equals dwc's NCHW separable kernel on the same tensors, given as PyTorch tensors."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    generator = torch.Generator().manual_seed(3)
    data = torch.randn(2, 16, 13, 11, generator=generator)
    if memory_format == "channels_last":
        data = data.contiguous(memory_format=torch.channels_last).contiguous()
    depthwise_weight = torch.randn(32, 1, 3, 3, generator=generator)  # multiplier 2
    depthwise_bias = torch.randn(32, generator=generator)
    pointwise_weight = torch.randn(24, 32, 1, 1, generator=generator)
    pointwise_bias = torch.randn(24, generator=generator)
    middle = functional.relu6(functional.conv2d(data, depthwise_weight, depthwise_bias, stride=2, padding=1,
                                                groups=16))
    expected = functional.conv2d(middle, pointwise_weight, pointwise_bias).numpy()
    hwcm = depthwise_weight.reshape(16, 2, 3, 3).permute(2, 3, 0, 1).contiguous()
    pointwise = pointwise_weight[:, :, 0, 0].T.contiguous().reshape(1, 1, 32, 24)
    actual = dwc.separable_conv2d(data, hwcm, pointwise, 2, [[1, 1], [1, 1]], "NCHW", depthwise_bias=depthwise_bias,
                                  depthwise_activation="relu6", pointwise_bias=pointwise_bias)
    assert max_relative_error(actual, expected) < 1e-5


@pytest.mark.parametrize("target", ["x86-avx2", "x86-avx512"])
@pytest.mark.parametrize("data_format", LAYOUTS)
def test_x86_targets(target, data_format):
    """The x86 targets' fused schedules (AVX2: 16 registers, AVX-512: 32) on MobileNet-like blocks."""
    skip_unless_this_cpu_runs(target)
    check_separable((14, 14, 48), (3, 3, 48, 1), 40, 1, "SAME", data_format, target=target, depthwise_bias=True,
                    depthwise_activation="relu6", pointwise_bias=True)
    check_separable((14, 14, 32), (3, 3, 32, 2), 24, 2, "SAME", data_format, target=target)


@pytest.mark.parametrize("data_format", LAYOUTS)
def test_aarch64_under_qemu(data_format):
    """The ARM fused schedule, cross-built and run under qemu-user, with and without epilogues."""
    check_separable((10, 10, 16), (3, 3, 16, 1), 24, 2, "SAME", data_format, target="aarch64-neon",
                    depthwise_bias=True, depthwise_activation="relu6", pointwise_bias=True)
    check_separable((9, 9, 8), (3, 3, 8, 2), 12, 1, "VALID", data_format, target="aarch64-neon", dilations=(2, 2))


@pytest.mark.parametrize("workload, data_format", [("mbv2-56x56x144-s1-pw24", "NHWC"),
                                                   ("mbv2-14x14x576-s2-pw160", "NCHW"),
                                                   ("mbv2-7x7x960-s1-pw160", "NHWC")])
def test_cuda_sm90_builds_fused(workload, data_format):
    """The CUDA fused schedule builds for sm_90: depthwise results staged in shared memory, loops
    bound to blocks and threads, no register spills; run and checked where a GPU is."""
    if shutil.which("nvcc") is None:
        pytest.skip("CUDA builds need nvcc")
    from dwc_compiler.cuda_driver import gpu_present
    from dwc_compiler.cuda_inspect import ptxas_report
    from dwc_compiler.workloads import workload as named

    base = named(workload).depthwise
    input_shape = base.input_shape if data_format == "NHWC" else (1, base.in_channels, base.in_height, base.in_width)
    spec = dwc.SeparableSpec.create(input_shape, base.filter_shape, named(workload).pointwise_filter_shape,
                                    base.strides, "SAME", data_format, with_depthwise_bias=True,
                                    depthwise_activation="relu6", with_pointwise_bias=True)
    kernel = dwc.build(spec, "cuda-sm90")
    source = kernel.inspect_source("cuda")
    assert kernel.schedule == "hand:cuda"
    for token in ("__shared__", "__syncthreads", "blockIdx.x", "threadIdx.x", "threadIdx.y", "pointwise_bias"):
        assert token in source, token
    passed, report = ptxas_report(source, 90)
    assert passed and "0 bytes spill stores" in report, report
    if gpu_present():
        inputs = random_inputs(spec)
        assert max_relative_error(kernel(*inputs), spec.reference(*inputs)) < 1e-5


def test_fused_schedule_keeps_the_depthwise_result_in_tiles():
    """x86 NHWC: the depthwise step is computed inside the parallel loop, per pixel tile (no
    full intermediate tensor), and both steps' inner loops are vectorized: the 144 channels at
    AVX-512's 16 lanes, the 24 output channels at 8 (the widest vector dividing them)."""
    import tvm

    from dwc_compiler.ops.primfunc import BLOCK_DEPTHWISE, BLOCK_POINTWISE, prim_func
    from dwc_compiler.schedules import apply_rules
    from dwc_compiler.targets import resolve_target
    from dwc_compiler.workloads import workload

    spec = workload("mbv2-56x56x144-s1-pw24")
    sch, name = apply_rules(prim_func(spec), spec, resolve_target("x86-avx512"))
    assert name == "hand:x86"
    for block, lanes in ((BLOCK_DEPTHWISE, 16), (f"{BLOCK_POINTWISE}_update", 8)):
        loops = [sch.get(loop) for loop in sch.get_loops(sch.get_sblock(block))]
        assert loops[0].kind == tvm.tirx.ForKind.PARALLEL and int(loops[0].extent) == 56
        assert loops[-1].kind == tvm.tirx.ForKind.VECTORIZED and int(loops[-1].extent) == lanes
    # The depthwise results are made per pixel tile: under the row loop (56) and the loop over
    # column tiles, one tile's pixels (a few) x 144 channels, not the 56x56x144 tensor.
    loops = [sch.get(loop) for loop in sch.get_loops(sch.get_sblock(BLOCK_DEPTHWISE))]
    tile_cols = 56 // int(loops[1].extent)
    assert 1 < tile_cols <= 16 and tile_cols * int(loops[1].extent) == 56
    assert int(np.prod([int(loop.extent) for loop in loops[2:]])) == tile_cols * 144


@pytest.mark.parametrize("workload", ["mbv2-7x7x960-s1-pw160", "mbv2-14x14x576-s2-pw160"])
def test_avx512_nchw_on_7x7_outputs_vectorizes_rows_of_8(workload):
    """NCHW rows are summed in whole vectors of 8 columns; a 7x7 output's row (8 columns) takes
    8-lane vectors on AVX-512, whose 16 lanes would not fit (its planning raised before), and its
    7 real columns are stored as one vector of 7 (split into a vector of 8 with a predicate, the
    store was scalar). The kernel is compiled for x86-avx512 (run where the CPU has it, by
    test_x86_targets' cases)."""
    import tvm
    import tvm_ffi

    from dwc_compiler.ops.primfunc import prim_func
    from dwc_compiler.runtime import runtime_for
    from dwc_compiler.schedules import apply_rules
    from dwc_compiler.targets import resolve_target
    from dwc_compiler.workloads import workload as named

    base = named(workload)
    depthwise = base.depthwise
    spec = dwc.SeparableSpec.create((1, depthwise.in_channels, depthwise.in_height, depthwise.in_width),
                                    depthwise.filter_shape, base.pointwise_filter_shape, depthwise.strides, "SAME",
                                    "NCHW")
    target = resolve_target("x86-avx512")
    schedule, name = apply_rules(prim_func(spec), spec, target)
    assert name == "hand:x86"
    vectorized = []
    tvm_ffi.structural_walk(schedule.mod["main"], ((tvm.tirx.For, lambda loop: vectorized.append(int(loop.extent))
                                                    if loop.kind == tvm.tirx.ForKind.VECTORIZED else None),),
                            order="pre")
    assert set(vectorized) == {8, 7}
    runtime_for(target).compile(schedule.mod, target)


def test_generic_rule_schedules_the_separable_op():
    """The generic fallback (any CPU family without a rule of its own) computes the op correctly."""
    from dwc_compiler.ops.primfunc import prim_func
    from dwc_compiler.runtime import runtime_for
    from dwc_compiler.schedules import generic
    from dwc_compiler.targets import resolve_target

    spec = dwc.SeparableSpec.create((1, 9, 9, 8), (3, 3, 8, 2), (1, 1, 16, 12), 2, "SAME",
                                    with_depthwise_bias=True, depthwise_activation="relu6")
    target = resolve_target("host")
    schedule = generic.apply(prim_func(spec), spec, target)
    runtime = runtime_for(target)
    kernel = dwc.Kernel(spec, target, generic.NAME, runtime,
                        runtime.instantiate(spec, target, runtime.compile(schedule.mod, target)))
    inputs = random_inputs(spec)
    assert max_relative_error(kernel(*inputs), spec.reference(*inputs)) < 1e-5


def test_spec_keys_arguments_and_round_trip():
    """The workload key tells epilogues apart, the tuning key does not (no loops of their own);
    the kernel declares its arguments in TF's order; to_dict/from_dict round-trips."""
    plain = dwc.SeparableSpec.create((1, 14, 14, 96), (3, 3, 96, 1), (1, 1, 96, 24), 1, "SAME")
    block = dwc.SeparableSpec.create((1, 14, 14, 96), (3, 3, 96, 1), (1, 1, 96, 24), 1, "SAME",
                                     with_depthwise_bias=True, depthwise_activation="relu6", with_pointwise_bias=True)
    assert plain.workload_key != block.workload_key and plain.tuning_key == block.tuning_key
    assert plain.workload_key.startswith("sep-")
    assert [argument.name for argument in block.arguments] == [
        "input", "depthwise_filter", "pointwise_filter", "depthwise_bias", "pointwise_bias", "output"]
    assert dwc.SeparableSpec.from_dict(block.to_dict()) == block
    assert block.flops == block.depthwise.flops + 2 * 14 * 14 * 96 * 24


@pytest.mark.parametrize("change, parameter", [
    ({"pointwise_filter": np.zeros((1, 1, 15, 8), np.float32)}, "pointwise_filter shape"),
    ({"pointwise_filter": np.zeros((3, 3, 16, 8), np.float32)}, "pointwise_filter shape"),
    ({"pointwise_filter": np.zeros((16, 8), np.float32)}, "pointwise_filter shape"),
    ({"depthwise_filter": np.zeros((3, 3, 12, 1), np.float32)}, "depthwise_filter shape"),
    ({"pointwise_filter": np.zeros((1, 1, 16, 8), np.float64)}, "pointwise_filter"),
    ({"depthwise_bias": np.zeros(8, np.float32)}, "depthwise_bias"),
    ({"pointwise_bias": np.zeros(16, np.float32)}, "pointwise_bias"),
    ({"depthwise_activation": "gelu"}, "depthwise_activation"),
    ({"pointwise_activation": "tanh"}, "pointwise_activation"),
    ({"strides": [1, 2, 2, 2]}, "strides"),
    ({"padding": "FULL"}, "padding"),
])
def test_bad_inputs_name_the_parameter(change, parameter):
    """A wrong pointwise shape, a channel mismatch, a wrong dtype, bias length or activation: a
    DwcError whose message starts with the parameter's name."""
    arguments = {"input": np.zeros((1, 8, 8, 16), np.float32), "depthwise_filter": np.zeros((3, 3, 16, 1), np.float32),
                 "pointwise_filter": np.zeros((1, 1, 16, 8), np.float32), "strides": 1, "padding": "SAME"}
    arguments.update(change)
    with pytest.raises(dwc.DwcError, match=f"^{parameter}"):
        dwc.separable_conv2d(**arguments)
