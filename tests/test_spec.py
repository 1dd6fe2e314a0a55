"""DepthwiseSpec: TF's shape semantics, and an error naming the parameter for each bad input."""

import pytest

import dwc_compiler as dwc
from dwc_compiler import DepthwiseSpec, InvalidSpecError


def test_same_padding_pads_bottom_right_more_for_even_kernels():
    """TF's SAME: output ceil(in/stride), and the odd extra pixel goes to the bottom/right."""
    spec = DepthwiseSpec.create((1, 8, 8, 4), (2, 2, 4, 1), 1, "SAME")
    assert spec.pads == (0, 1, 0, 1) and spec.output_shape == (1, 8, 8, 4)
    spec = DepthwiseSpec.create((1, 8, 8, 4), (3, 3, 4, 1), 2, "SAME")
    assert spec.pads == (0, 1, 0, 1) and spec.output_shape == (1, 4, 4, 4)


def test_valid_padding_and_unequal_strides():
    """VALID has no padding; row and column strides may differ."""
    spec = DepthwiseSpec.create((1, 7, 9, 4), (3, 3, 4, 1), [1, 2, 3, 1], "VALID")
    assert spec.pads == (0, 0, 0, 0) and spec.strides == (2, 3)
    assert spec.output_shape == (1, 3, 3, 4)


def test_explicit_padding_in_either_layout():
    """TF's 4x2 explicit list is read in the data format's order; shorter forms are accepted too."""
    nhwc = DepthwiseSpec.create((1, 6, 6, 3), (3, 3, 3, 1), 1, [[0, 0], [0, 3], [2, 0], [0, 0]])
    nchw = DepthwiseSpec.create((1, 3, 6, 6), (3, 3, 3, 1), 1, [[0, 0], [0, 0], [0, 3], [2, 0]], "NCHW")
    short = DepthwiseSpec.create((1, 6, 6, 3), (3, 3, 3, 1), 1, [0, 3, 2, 0])
    assert nhwc.pads == nchw.pads == short.pads == (0, 3, 2, 0)
    assert nhwc.output_shape == (1, 7, 6, 3) and nchw.output_shape == (1, 3, 7, 6)


def test_dilation_output_shape():
    """Atrous: the effective window is (k-1)*d+1."""
    spec = DepthwiseSpec.create((1, 10, 10, 5), (3, 2, 5, 3), 1, "VALID", dilations=[3, 1])
    assert spec.output_shape == (1, 4, 9, 15)


def test_flops_bytes_and_workload_key():
    """FLOPs = 2*N*OH*OW*C*M*KH*KW; bytes = input+filter+output; equal specs share a key."""
    spec = DepthwiseSpec.create((1, 56, 56, 144), (3, 3, 144, 1), 1, "SAME")
    assert spec.flops == 2 * 56 * 56 * 144 * 9
    assert spec.min_bytes_moved == 4 * (56 * 56 * 144 * 2 + 9 * 144)
    explicit = DepthwiseSpec.create((1, 56, 56, 144), (3, 3, 144, 1), [1, 1, 1, 1], [1, 1, 1, 1])
    assert spec.workload_key == explicit.workload_key
    assert spec.workload_key != DepthwiseSpec.create((1, 56, 56, 144), (3, 3, 144, 1), 2, "SAME").workload_key
    assert DepthwiseSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("kwargs, parameter", [
    (dict(input_shape=(1, 8, 8), filter_shape=(3, 3, 8, 1)), "input shape"),
    (dict(input_shape=(1, 8, 8, 4), filter_shape=(3, 3, 4)), "filter shape"),
    (dict(input_shape=(1, 8, 8, 4), filter_shape=(3, 3, 5, 1)), "filter shape"),
    (dict(input_shape=(1, 0, 8, 4), filter_shape=(3, 3, 4, 1)), "input shape"),
    (dict(input_shape=(1, 8, 8, 4), filter_shape=(3, 3, 4, 0)), "filter shape"),
    (dict(input_shape=(1, 8, 8, 4), filter_shape=(3, 3, 4, 1), strides=(1, 1, 1)), "strides"),
    (dict(input_shape=(1, 8, 8, 4), filter_shape=(3, 3, 4, 1), strides=(0, 1)), "strides"),
    (dict(input_shape=(1, 8, 8, 4), filter_shape=(3, 3, 4, 1), strides=(2, 1, 1, 1)), "strides"),
    (dict(input_shape=(1, 8, 8, 4), filter_shape=(3, 3, 4, 1), dilations=(1, 1, 1)), "dilations"),
    (dict(input_shape=(1, 8, 8, 4), filter_shape=(3, 3, 4, 1), dilations=(0, 1)), "dilations"),
    (dict(input_shape=(1, 8, 8, 4), filter_shape=(3, 3, 4, 1), strides=2, dilations=2), "dilations"),
    (dict(input_shape=(1, 8, 8, 4), filter_shape=(3, 3, 4, 1), padding="FULL"), "padding"),
    (dict(input_shape=(1, 8, 8, 4), filter_shape=(3, 3, 4, 1), padding=[[0, 0], [1, 1], [1, 1]]), "padding"),
    (dict(input_shape=(1, 8, 8, 4), filter_shape=(3, 3, 4, 1), padding=[1, -1, 0, 0]), "padding"),
    (dict(input_shape=(1, 8, 8, 4), filter_shape=(3, 3, 4, 1), padding=[[1, 0], [1, 1], [1, 1], [0, 0]]), "padding"),
    (dict(input_shape=(1, 2, 8, 4), filter_shape=(3, 3, 4, 1), padding="VALID"), "output would be empty"),
    (dict(input_shape=(1, 8, 8, 4), filter_shape=(3, 3, 4, 1), dtype="int8"), "dtype"),
    (dict(input_shape=(1, 8, 8, 4), filter_shape=(3, 3, 4, 1), dtype="bfloat17"), "dtype"),
    (dict(input_shape=(1, 8, 8, 4), filter_shape=(3, 3, 4, 1), data_format="NDHWC"), "data_format"),
    (dict(input_shape=(1, 8, 8, 4), filter_shape=(3.0, 3, 4, 1)), "filter shape"),
])
def test_invalid_spec_names_the_parameter(kwargs, parameter):
    """Each invalid input raises InvalidSpecError (a DwcError) whose message names the parameter."""
    kwargs.setdefault("padding", "SAME")
    with pytest.raises(InvalidSpecError) as raised:
        DepthwiseSpec.create(**kwargs)
    assert parameter in str(raised.value)
    assert isinstance(raised.value, dwc.DwcError)


def test_unknown_target_is_named():
    """An unknown target names itself and the accepted names."""
    spec = DepthwiseSpec.create((1, 8, 8, 4), (3, 3, 4, 1), 1, "SAME")
    with pytest.raises(dwc.UnknownTargetError, match=r"target: unknown target 'pentium'.*x86-avx512"):
        dwc.build(spec, "pentium")
