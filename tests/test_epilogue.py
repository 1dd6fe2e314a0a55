"""The fused epilogue (bias + ReLU/ReLU6) and the filter formats against the float64 reference,
on fresh random inputs, in both layouts, on every kind of target (x86 here, aarch64 under qemu,
CUDA built here and run where a GPU is)."""

import numpy as np
import pytest

import dwc_compiler as dwc
from dwc_compiler.ops.compare import max_relative_error
from dwc_compiler.ops.depthwise import filter_from_hwcm

from helpers import check_against_reference, random_inputs, skip_unless_this_cpu_runs

ACTIVATIONS = [None, "relu", "relu6"]
LAYOUTS = ["NHWC", "NCHW"]


def _shapes(data_format, channels=32, size=10, multiplier=1):
    input_shape = (1, size, size, channels) if data_format == "NHWC" else (1, channels, size, size)
    return input_shape, (3, 3, channels, multiplier)


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_epilogue_on_host(data_format, bias, activation):
    """Each activation, with and without bias, float32, both layouts (stride 2 to cover borders)."""
    check_against_reference(*_shapes(data_format), strides=2, data_format=data_format, bias=bias,
                            activation=activation)


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_epilogue_in_other_dtypes(data_format, dtype):
    """float64 and float16 (summed and activated in float32) with bias + ReLU6."""
    check_against_reference(*_shapes(data_format, channels=16), data_format=data_format, dtype=dtype, bias=True,
                            activation="relu6")


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("filter_format", ["HWCM", "OIHW", "GOIHW"])
@pytest.mark.parametrize("multiplier", [1, 2])
def test_filter_formats_on_host(data_format, filter_format, multiplier):
    """Every filter format gives TF's result in either layout, for multipliers 1 and 2."""
    check_against_reference(*_shapes(data_format, channels=24, multiplier=multiplier), data_format=data_format,
                            filter_format=filter_format)


@pytest.mark.parametrize("filter_format", ["OIHW", "GOIHW"])
def test_filter_format_with_dilation_padding_and_epilogue(filter_format):
    """A filter format combined with dilation, explicit padding, multiplier 3 and the epilogue."""
    check_against_reference((1, 11, 12, 8), (3, 3, 8, 3), 1, [[0, 0], [2, 1], [0, 3], [0, 0]], dilations=(2, 1),
                            filter_format=filter_format, bias=True, activation="relu")


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("filter_format", ["OIHW", "GOIHW"])
def test_pytorch_and_onednn_forms_take_stride_and_dilation_together(data_format, filter_format):
    """PyTorch and oneDNN allow a stride and a dilation at once (TF does not): with their filter
    forms the kernel computes it (stride 2x1 with dilation 1x2, NHWC and NCHW)."""
    check_against_reference(*_shapes(data_format, channels=8, size=13), strides=(2, 1), padding=[[1, 1], [2, 2]],
                            data_format=data_format, dilations=(1, 2), filter_format=filter_format, bias=True,
                            activation="relu6")


def test_tf_form_refuses_stride_with_dilation():
    """TF's HWCM form keeps TF's rule: dilation above 1 needs strides of 1, named in the error."""
    with pytest.raises(dwc.InvalidSpecError, match="^dilations"):
        dwc.DepthwiseSpec.create((1, 9, 9, 8), (3, 3, 8, 1), 2, "SAME", dilations=2)


def test_relu6_clips_both_ends():
    """ReLU6 really clips: large inputs saturate at 6, negative sums at 0."""
    spec = dwc.DepthwiseSpec.create((1, 4, 4, 16), (1, 1, 16, 1), activation="relu6")
    data = np.linspace(-20, 20, 256, dtype=np.float32).reshape(spec.input_shape)
    weights = np.ones(spec.filter_shape, np.float32)
    out = dwc.build(spec, "host")(data, weights)
    assert out.min() == 0.0 and out.max() == 6.0
    np.testing.assert_allclose(out, np.clip(data, 0, 6))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("width", [14, 7, 16], ids=["rows-of-14", "rows-of-7", "whole-rows"])
def test_relu6_of_special_values_is_the_same_in_both_layouts(width, dtype):
    """ReLU6 of NaN and infinities gives the same on x86-avx512 in NCHW kernels (whose rows of 14
    and 7 columns are clipped as whole vectors with x86's own min and max) and NHWC ones (TVM's
    ``a > b ? a : b`` and ``a < b ? a : b``): NaN gives 0 from the max, the infinities their bounds."""
    skip_unless_this_cpu_runs("x86-avx512")
    values = np.array([np.nan, 0.0, np.inf, -np.inf, 7.0, -3.0, 5.5, 6.0], dtype)
    nchw = np.resize(values, (1, 16, width, width))
    nhwc = np.ascontiguousarray(nchw.transpose(0, 2, 3, 1))
    weights = np.ones((1, 1, 16, 1), dtype)
    arguments = {"activation": "relu6", "target": "x86-avx512"}
    out_nchw = dwc.depthwise_conv2d(nchw, weights, 1, "VALID", "NCHW", **arguments)
    out_nhwc = dwc.depthwise_conv2d(nhwc, weights, 1, "VALID", "NHWC", **arguments)
    kept = np.where(nchw > 0, nchw, 0).astype(dtype)
    expected = np.where(kept < 6, kept, 6).astype(dtype)
    np.testing.assert_array_equal(out_nchw, expected)
    np.testing.assert_array_equal(out_nhwc.transpose(0, 3, 1, 2), expected)


@pytest.mark.parametrize("target", ["x86-avx2", "x86-avx512"])
@pytest.mark.parametrize("data_format", LAYOUTS)
def test_epilogue_and_formats_on_x86_targets(target, data_format):
    """The x86 targets' schedules apply the epilogue and read every filter format."""
    skip_unless_this_cpu_runs(target)
    check_against_reference(*_shapes(data_format), strides=2, data_format=data_format, bias=True,
                            activation="relu6", target=target)
    check_against_reference(*_shapes(data_format, multiplier=2), data_format=data_format, filter_format="OIHW",
                            bias=True, activation="relu", target=target)
    check_against_reference(*_shapes(data_format), data_format=data_format, filter_format="GOIHW", target=target)


@pytest.mark.parametrize("data_format", LAYOUTS)
def test_epilogue_and_formats_on_aarch64_under_qemu(data_format):
    """The ARM schedule applies the epilogue and reads every filter format (run under qemu)."""
    check_against_reference(*_shapes(data_format), strides=2, data_format=data_format, bias=True,
                            activation="relu6", target="aarch64-neon")
    check_against_reference(*_shapes(data_format, multiplier=2), data_format=data_format, filter_format="OIHW",
                            bias=True, target="aarch64-neon")
    check_against_reference(*_shapes(data_format, channels=16), data_format=data_format, filter_format="GOIHW",
                            dtype="float16", activation="relu", target="aarch64-neon")


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("filter_format", ["HWCM", "OIHW", "GOIHW"])
def test_epilogue_and_formats_build_for_cuda_sm90(data_format, filter_format):
    """The CUDA schedule builds the fused epilogue for sm_90 with every filter format: the kernel
    takes the bias, clamps to [0, 6] and keeps the threads bound; it is checked where a GPU is."""
    import shutil

    if shutil.which("nvcc") is None:
        pytest.skip("CUDA builds need nvcc")
    from dwc_compiler.cuda_driver import gpu_present

    input_shape, tf_filter_shape = _shapes(data_format, multiplier=2)
    spec = dwc.DepthwiseSpec.create(input_shape, filter_from_hwcm(np.zeros(tf_filter_shape), filter_format).shape,
                                    1, "SAME", data_format, filter_format=filter_format, with_bias=True,
                                    activation="relu6")
    kernel = dwc.build(spec, "cuda-sm90")
    source = kernel.inspect_source("cuda")
    assert "bias" in source and "threadIdx.x" in source
    assert "6.000000e+00" in source and "max(" in source and "min(" in source
    if gpu_present():
        inputs = random_inputs(spec)
        assert max_relative_error(kernel(*inputs), spec.reference(*inputs)) < 1e-5


def test_oihw_matches_pytorch_grouped_conv2d():
    """The OIHW format is PyTorch's: dwc equals torch.nn.functional.conv2d(groups=C) with bias and
    ReLU6 on the same tensors (NCHW, multiplier 2, stride 2, padding 1)."""
    torch = pytest.importorskip("torch")
    functional = pytest.importorskip("torch.nn.functional")
    rng = np.random.default_rng(5)
    data = rng.standard_normal((2, 16, 13, 11)).astype(np.float32)
    weight = rng.standard_normal((32, 1, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(32).astype(np.float32)
    expected = functional.relu6(functional.conv2d(torch.from_numpy(data), torch.from_numpy(weight),
                                                  torch.from_numpy(bias), stride=2, padding=1, groups=16)).numpy()
    actual = dwc.depthwise_conv2d(data, weight, 2, [[1, 1], [1, 1]], "NCHW", bias=bias, activation="relu6",
                                  filter_format="OIHW")
    assert actual.shape == expected.shape
    assert max_relative_error(actual, expected) < 1e-5


@pytest.mark.parametrize("call, parameter", [
    (lambda x, w: dwc.depthwise_conv2d(x, w, 1, "SAME", bias=np.zeros(7, np.float32)), "bias"),
    (lambda x, w: dwc.depthwise_conv2d(x, w, 1, "SAME", bias=np.zeros(16, np.float64)), "bias"),
    (lambda x, w: dwc.depthwise_conv2d(x, w, 1, "SAME", activation="gelu"), "activation"),
    (lambda x, w: dwc.depthwise_conv2d(x, w, 1, "SAME", filter_format="HWIO"), "filter_format"),
    (lambda x, w: dwc.depthwise_conv2d(x, w, 1, "SAME", filter_format="OIHW"), "filter shape"),
])
def test_bad_epilogue_or_format_names_the_parameter(call, parameter):
    """A wrong bias length or dtype, an unknown activation or filter format: a DwcError naming it."""
    data = np.zeros((1, 6, 6, 16), np.float32)
    weights = np.zeros((3, 3, 16, 1), np.float32)
    with pytest.raises(dwc.DwcError, match=f"^{parameter}"):
        call(data, weights)


def test_kernel_takes_the_declared_arguments():
    """A kernel built with a bias takes (input, filter, bias); a missing bias is named."""
    spec = dwc.DepthwiseSpec.create((1, 6, 6, 16), (3, 3, 16, 1), 1, "SAME", with_bias=True)
    assert [argument.name for argument in spec.arguments] == ["input", "filter", "bias", "output"]
    kernel = dwc.build(spec, "host")
    data, weights, bias = random_inputs(spec)
    with pytest.raises(dwc.InvalidArgumentError, match="^bias"):
        kernel(data, weights)
    assert max_relative_error(kernel(data, weights, bias), spec.reference(data, weights, bias)) < 1e-5


def test_workload_key_covers_the_epilogue_and_format():
    """The workload key tells the epilogue and filter format apart; the tuning key ignores the
    epilogue (no loop of its own) but not the format; plain TF specs keep their keys."""
    plain = dwc.DepthwiseSpec.create((1, 14, 14, 576), (3, 3, 576, 1), 1, "SAME")
    fused = dwc.DepthwiseSpec.create((1, 14, 14, 576), (3, 3, 576, 1), 1, "SAME", with_bias=True,
                                     activation="relu6")
    oihw = dwc.DepthwiseSpec.create((1, 14, 14, 576), (576, 1, 3, 3), 1, "SAME", filter_format="OIHW")
    assert len({plain.workload_key, fused.workload_key, oihw.workload_key}) == 3
    assert fused.tuning_key == plain.tuning_key == plain.workload_key != oihw.tuning_key
    assert plain.workload_key == "dw-63b50a35bd0463c6"  # the key the shipped records were tuned under
    assert dwc.DepthwiseSpec.from_dict(fused.to_dict()) == fused


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_sums_start_from_the_bias(data_format, dtype):
    """The PrimFunc starts each window sum from its channel's bias (the conv block's init reads
    it, cast to the accumulator's dtype) and leaves the epilogue only the activation and cast:
    the bias costs no add of its own. Values are checked by the tests above."""
    from tvm.s_tir import Schedule

    from dwc_compiler.ops.primfunc import BLOCK_CONV, BLOCK_EPILOGUE, prim_func

    spec = dwc.DepthwiseSpec.create(*_shapes(data_format, channels=16, multiplier=2), 1, "SAME", data_format,
                                    dtype=dtype, with_bias=True, activation="relu6")
    sch = Schedule(prim_func(spec))
    conv, epilogue = sch.get(sch.get_sblock(BLOCK_CONV)), sch.get(sch.get_sblock(BLOCK_EPILOGUE))
    assert "bias" in conv.init.script() and "bias" in [str(region.source.name) for region in conv.reads]
    assert "bias" not in epilogue.body.script()
    assert [str(region.source.name) for region in epilogue.reads] == [BLOCK_CONV]
    channel = conv.init.indices[spec.channel_axis]
    assert any(channel.same_as(var.var) for var in conv.iter_vars)
