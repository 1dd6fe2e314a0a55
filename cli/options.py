"""Click option types and the shared set of options that describe one convolution."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import click

from ..errors import InvalidSpecError
from ..ops import SPEC_TYPES
from ..ops.depthwise import FILTER_FORMATS, DepthwiseSpec
from ..ops.epilogue import ACTIVATIONS
from ..ops.separable import SeparableSpec
from ..ops.tf_params import DATA_FORMATS, DTYPES
from ..workloads import WORKLOADS, workload


class IntList(click.ParamType):
    """Comma-separated integers: ``1,56,56,144``."""

    name = "INTS"

    def convert(self, value: Any, param, ctx) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            return tuple(int(part) for part in str(value).replace("x", ",").split(",") if part.strip())
        except ValueError:
            self.fail(f"expected comma-separated integers such as 1,56,56,144, got {value!r}", param, ctx)


class Padding(click.ParamType):
    """``SAME``, ``VALID`` or four numbers ``top,bottom,left,right``."""

    name = "PADDING"

    def convert(self, value: Any, param, ctx):
        if not isinstance(value, str):
            return value
        if value.upper() in ("SAME", "VALID"):
            return value.upper()
        try:
            amounts = [int(part) for part in value.split(",")]
        except ValueError:
            amounts = []
        if len(amounts) != 4:
            self.fail(f"expected SAME, VALID or four numbers top,bottom,left,right, got {value!r}", param, ctx)
        return amounts


def spec_options(command: Callable, required: bool = True) -> Callable:
    """Add the options that describe a convolution (depthwise, or separable with ``--op
    separable``); the command receives ``spec``.

    With `required` False, a command given none of the shape options receives ``spec=None``.
    """
    options = [
        click.option("--op", type=click.Choice(tuple(SPEC_TYPES)), default="depthwise", show_default=True,
                     help="depthwise (tf.nn.depthwise_conv2d) or separable (tf.nn.separable_conv2d: the "
                          "depthwise step, then a 1x1 pointwise product, fused in one kernel)."),
        click.option("--workload", "workload_name", metavar="NAME",
                     help=f"A named workload instead of the shape options, e.g. mbv2-56x56x144-s1 "
                          f"(one of: {', '.join(WORKLOADS)})."),
        click.option("--input-shape", type=IntList(),
                     help="Input shape in the data format's order, e.g. 1,56,56,144 (NHWC) or 1,144,56,56 (NCHW)."),
        click.option("--filter-shape", type=IntList(),
                     help="Filter shape in the filter format, e.g. 3,3,144,1 (HWCM: height, width, in_channels, "
                          "multiplier) or 144,1,3,3 (OIHW)."),
        click.option("--filter-format", type=click.Choice(tuple(FILTER_FORMATS)), default="HWCM", show_default=True,
                     help="Filter layout: HWCM [KH,KW,C,M] (TF), OIHW [C*M,1,KH,KW] (PyTorch), "
                          "GOIHW [C,M,1,KH,KW] (oneDNN)."),
        click.option("--bias", "with_bias", is_flag=True,
                     help="The kernel adds a bias of C*M values to the depthwise output (fused, no extra pass)."),
        click.option("--activation", type=click.Choice(ACTIVATIONS), default="none", show_default=True,
                     help="Activation fused after the depthwise bias: none, relu or relu6."),
        click.option("--pointwise-filter-shape", type=IntList(),
                     help="--op separable: the pointwise filter [1,1,C*M,O], e.g. 1,1,144,24."),
        click.option("--pointwise-bias", "with_pointwise_bias", is_flag=True,
                     help="--op separable: a bias of O values after the pointwise step."),
        click.option("--pointwise-activation", type=click.Choice(ACTIVATIONS), default="none", show_default=True,
                     help="--op separable: activation after the pointwise bias."),
        click.option("--strides", type=IntList(), default="1,1", show_default=True,
                     help="Row,col strides (e.g. 2,2), or TF's four numbers in the layout (1,2,2,1 for NHWC)."),
        click.option("--padding", type=Padding(), default="SAME", show_default=True,
                     help="SAME, VALID, or explicit amounts top,bottom,left,right, e.g. 1,1,1,1."),
        click.option("--dilations", type=IntList(), default="1,1", show_default=True,
                     help="Row,col dilations for atrous convolution (e.g. 2,2); strides must then be 1."),
        click.option("--data-format", type=click.Choice(DATA_FORMATS), default="NHWC", show_default=True,
                     help="Layout of input and output: NHWC (TF's default) or NCHW."),
        click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
                     help="Element type of input, filter and output."),
    ]

    @functools.wraps(command)
    def wrapper(*args, op, workload_name, input_shape, filter_shape, filter_format, with_bias, activation,
                pointwise_filter_shape, with_pointwise_bias, pointwise_activation, strides, padding, dilations,
                data_format, dtype, **kwargs):
        separable_only = {"--pointwise-filter-shape": pointwise_filter_shape is not None,
                          "--pointwise-bias": with_pointwise_bias, "--pointwise-activation": pointwise_activation != "none"}
        if workload_name:
            spec = _with_epilogues(workload(workload_name), with_bias, activation, with_pointwise_bias,
                                   pointwise_activation)
        elif not required and input_shape is None and filter_shape is None:
            spec = None
        elif input_shape is None or filter_shape is None:
            raise InvalidSpecError(
                "input shape: give --input-shape and --filter-shape (e.g. --input-shape 1,56,56,144 "
                "--filter-shape 3,3,144,1), or --workload NAME")
        elif op == SeparableSpec.op:
            if pointwise_filter_shape is None:
                raise InvalidSpecError("pointwise_filter shape: --op separable needs --pointwise-filter-shape "
                                       "1,1,C*M,O (e.g. 1,1,144,24)")
            if filter_format != "HWCM":
                raise InvalidSpecError("filter_format: --op separable takes TF's HWCM depthwise filter only")
            spec = SeparableSpec.create(input_shape, filter_shape, pointwise_filter_shape, strides, padding,
                                        data_format, dilations, dtype, with_depthwise_bias=with_bias,
                                        depthwise_activation=activation, with_pointwise_bias=with_pointwise_bias,
                                        pointwise_activation=pointwise_activation)
        else:
            spec = DepthwiseSpec.create(input_shape, filter_shape, strides, padding, data_format,
                                        dilations, dtype, filter_format=filter_format, with_bias=with_bias,
                                        activation=activation)
        if spec is not None and not isinstance(spec, SeparableSpec) and any(separable_only.values()):
            given = ", ".join(name for name, used in separable_only.items() if used)
            raise InvalidSpecError(f"op: {given} describe the pointwise step of --op separable "
                                   f"(or a separable --workload such as mbv2-56x56x144-s1-pw24)")
        return command(*args, spec=spec, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def _with_epilogues(spec: DepthwiseSpec | SeparableSpec, with_bias: bool, activation: str, with_pointwise_bias: bool,
                    pointwise_activation: str) -> DepthwiseSpec | SeparableSpec:
    """A named workload's spec with the epilogues the options ask for (``--bias``/``--activation``
    after the depthwise step, ``--pointwise-*`` after a separable workload's pointwise step)."""
    if isinstance(spec, SeparableSpec):
        depthwise = dataclasses.replace(spec.depthwise, with_bias=with_bias, activation=activation)
        return dataclasses.replace(spec, depthwise=depthwise, with_pointwise_bias=with_pointwise_bias,
                                   pointwise_activation=pointwise_activation)
    return dataclasses.replace(spec, with_bias=with_bias, activation=activation)
