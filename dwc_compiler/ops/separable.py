"""Depthwise-separable convolution (``tf.nn.separable_conv2d``): spec, TE compute, float64 reference.

``output[b, i, j, o] = sum_k depthwise(input)[b, i, j, k] * pointwise_filter[0, 0, k, o]``: a
depthwise convolution (:mod:`.depthwise`, TF's ``[KH, KW, C, M]`` filter, its strides, dilations
and padding), then a 1x1 convolution across its ``C * M`` channels with TF's ``[1, 1, C*M, O]``
pointwise filter. dwc adds a bias and ReLU/ReLU6 after each step (a MobileNet block runs
depthwise -> bias -> ReLU6 -> pointwise -> bias), applied inside the one kernel.

:class:`SeparableSpec` holds the depthwise step as a :class:`~.depthwise.DepthwiseSpec` and adds
the pointwise step's output channels and epilogue. Its kernel takes (input, depthwise_filter,
pointwise_filter, depthwise_bias?, pointwise_bias?, output).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidSpecError
from .depthwise import DepthwiseSpec, te_depthwise
from .epilogue import check_activation, check_bias_flag, describe_epilogue, numpy_epilogue, te_epilogue
from .primfunc import BLOCK_CONV, BLOCK_DEPTHWISE, BLOCK_EPILOGUE, BLOCK_POINTWISE, SumStage, accumulator_dtype
from .signature import Argument
from .tf_params import IntOrInts, PaddingArg, as_int, int_tuple, layout_of

OP_NAME = "separable"
POINTWISE_LAYOUT = "[1, 1, C*M, O]"


def _renamed(error: InvalidSpecError) -> InvalidSpecError:
    """A depthwise spec's error about its ``filter`` as one about the ``depthwise_filter``."""
    message = str(error)
    for before, after in (("filter shape:", "depthwise_filter shape:"), ("filter:", "depthwise_filter:"),
                          ("bias:", "depthwise_bias:"), ("activation:", "depthwise_activation:")):
        if message.startswith(before):
            return InvalidSpecError(after + message[len(before):])
    return error


def _pointwise_out_channels(shape: Any, depthwise_channels: int) -> int:
    """O of a pointwise filter shape ``[1, 1, C*M, O]``, checked against the depthwise step's C*M."""
    dims = int_tuple(shape, "pointwise_filter shape")
    if len(dims) != 4:
        raise InvalidSpecError(f"pointwise_filter shape: expected 4 dimensions {POINTWISE_LAYOUT}, "
                               f"got {len(dims)} ({list(dims)})")
    if dims[0] != 1 or dims[1] != 1:
        raise InvalidSpecError(f"pointwise_filter shape: a pointwise filter is {POINTWISE_LAYOUT}, "
                               f"its first two dimensions 1, got {list(dims)}")
    if dims[2] != depthwise_channels:
        raise InvalidSpecError(
            f"pointwise_filter shape: dimension 2 of {POINTWISE_LAYOUT} must equal the depthwise step's "
            f"C*M = {depthwise_channels} channels, got {dims[2]} in {list(dims)}")
    if dims[3] < 1:
        raise InvalidSpecError(f"pointwise_filter shape: out_channels (dimension 3) must be >= 1, got {list(dims)}")
    return dims[3]


@dataclasses.dataclass(frozen=True)
class SeparableSpec:
    """One depthwise-separable convolution with its fused epilogues, validated.

    Build it with :meth:`create` (TF's argument forms) or the constructor (the resolved form).

    Attributes:
        depthwise: the depthwise step (TF's ``HWCM`` filter), with its own bias and activation
            (``depthwise.with_bias``, ``depthwise.activation``).
        out_channels: O, the pointwise step's output channels.
        with_pointwise_bias: whether the kernel adds a bias of O values after the pointwise step.
        pointwise_activation: ``"none"``, ``"relu"`` or ``"relu6"``, after the pointwise bias.

    Raises:
        InvalidSpecError: naming the parameter (``depthwise_filter``, ``pointwise_filter``, ...).
    """

    depthwise: DepthwiseSpec
    out_channels: int
    with_pointwise_bias: bool = False
    pointwise_activation: str = "none"

    op = OP_NAME

    def __post_init__(self) -> None:
        if not isinstance(self.depthwise, DepthwiseSpec):
            raise InvalidSpecError(f"depthwise: expected a DepthwiseSpec, got {type(self.depthwise).__name__}")
        if self.depthwise.filter_format != "HWCM":
            raise InvalidSpecError(f"depthwise_filter: separable_conv2d takes TF's [KH, KW, C, M] filter, "
                                   f"got the {self.depthwise.filter_format} format")
        out_channels = as_int(self.out_channels, "pointwise_filter out_channels")
        if out_channels < 1:
            raise InvalidSpecError(f"pointwise_filter shape: out_channels must be >= 1, got {out_channels}")
        object.__setattr__(self, "out_channels", out_channels)
        object.__setattr__(self, "with_pointwise_bias", check_bias_flag(self.with_pointwise_bias, "pointwise_bias"))
        object.__setattr__(self, "pointwise_activation",
                           check_activation(self.pointwise_activation, "pointwise_activation"))

    @classmethod
    def create(cls, input_shape: Sequence[int], depthwise_filter_shape: Sequence[int],
               pointwise_filter_shape: Sequence[int], strides: IntOrInts = 1, padding: PaddingArg = "VALID",
               data_format: str | None = "NHWC", dilations: IntOrInts | None = None, dtype: Any = "float32", *,
               with_depthwise_bias: bool = False, depthwise_activation: str | None = None,
               with_pointwise_bias: bool = False, pointwise_activation: str | None = None) -> "SeparableSpec":
        """A spec from TF's argument forms (``tf.nn.separable_conv2d``) and dwc's epilogues.

        Args:
            input_shape: 4 sizes in ``data_format``.
            depthwise_filter_shape: ``[KH, KW, C, M]``.
            pointwise_filter_shape: ``[1, 1, C*M, O]``.
            strides, padding, data_format, dilations, dtype: as :meth:`DepthwiseSpec.create`
                (they apply to the depthwise step; the pointwise step has stride 1, no padding).
            with_depthwise_bias, depthwise_activation: the epilogue after the depthwise step
                (a bias of C*M values).
            with_pointwise_bias, pointwise_activation: the epilogue after the pointwise step
                (a bias of O values).

        Raises:
            InvalidSpecError: naming the parameter and what is accepted.
        """
        try:
            depthwise = DepthwiseSpec.create(input_shape, depthwise_filter_shape, strides, padding, data_format,
                                             dilations, dtype, with_bias=check_bias_flag(with_depthwise_bias,
                                                                                          "depthwise_bias"),
                                             activation=check_activation(depthwise_activation,
                                                                         "depthwise_activation"))
        except InvalidSpecError as error:
            raise _renamed(error) from None
        out_channels = _pointwise_out_channels(pointwise_filter_shape, depthwise.out_channels)
        return cls(depthwise, out_channels, with_pointwise_bias, check_activation(pointwise_activation,
                                                                                 "pointwise_activation"))

    # --- dimensions -----------------------------------------------------------------
    @property
    def dtype(self) -> str:
        """The element type of every array."""
        return self.depthwise.dtype

    @property
    def data_format(self) -> str:
        """``"NHWC"`` or ``"NCHW"``, of input and output."""
        return self.depthwise.data_format

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return self.depthwise.itemsize

    @property
    def batch(self) -> int:
        """N."""
        return self.depthwise.batch

    @property
    def depthwise_channels(self) -> int:
        """C * M, the channels between the two steps."""
        return self.depthwise.out_channels

    @property
    def pointwise_filter_shape(self) -> tuple[int, int, int, int]:
        """``(1, 1, C*M, O)``."""
        return (1, 1, self.depthwise_channels, self.out_channels)

    @property
    def channel_axis(self) -> int:
        """The channel axis of input and output."""
        return self.depthwise.channel_axis

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        """The output's shape in ``data_format``."""
        depthwise = self.depthwise
        if self.data_format == "NHWC":
            return (depthwise.batch, depthwise.out_height, depthwise.out_width, self.out_channels)
        return (depthwise.batch, self.out_channels, depthwise.out_height, depthwise.out_width)

    @property
    def arguments(self) -> tuple[Argument, ...]:
        """The arrays the kernel takes: input, depthwise_filter, pointwise_filter, then the biases
        it has (depthwise_bias, pointwise_bias), the output last."""
        depthwise = self.depthwise
        layout = layout_of(self.data_format)
        arguments = [Argument("input", depthwise.input_shape, self.dtype, layout),
                     Argument("depthwise_filter", depthwise.filter_shape, self.dtype, "[KH, KW, C, M]"),
                     Argument("pointwise_filter", self.pointwise_filter_shape, self.dtype, POINTWISE_LAYOUT)]
        if depthwise.with_bias:
            arguments.append(Argument("depthwise_bias", (self.depthwise_channels,), self.dtype, "[C*M]"))
        if self.with_pointwise_bias:
            arguments.append(Argument("pointwise_bias", (self.out_channels,), self.dtype, "[O]"))
        arguments.append(Argument("output", self.output_shape, self.dtype, layout))
        return tuple(arguments)

    @property
    def pointwise_flops(self) -> int:
        """``2 * N * OH * OW * C*M * O``."""
        depthwise = self.depthwise
        return 2 * depthwise.batch * depthwise.out_height * depthwise.out_width * self.depthwise_channels \
            * self.out_channels

    @property
    def flops(self) -> int:
        """The depthwise step's FLOPs plus the pointwise step's."""
        return self.depthwise.flops + self.pointwise_flops

    @property
    def min_bytes_moved(self) -> int:
        """Every argument read or written once (no intermediate tensor)."""
        return sum(int(np.prod(argument.shape)) for argument in self.arguments) * self.itemsize

    # --- identity ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that :meth:`from_dict` reads back."""
        return {"op": OP_NAME, "depthwise": self.depthwise.to_dict(), "out_channels": self.out_channels,
                "with_pointwise_bias": self.with_pointwise_bias, "pointwise_activation": self.pointwise_activation}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SeparableSpec":
        """The spec written by :meth:`to_dict`.

        Raises:
            InvalidSpecError: if a field is missing or invalid.
        """
        missing = [name for name in ("depthwise", "out_channels") if name not in data]
        if missing:
            raise InvalidSpecError(f"spec: missing field(s) {', '.join(missing)}")
        return cls(DepthwiseSpec.from_dict(data["depthwise"]), data["out_channels"],
                   data.get("with_pointwise_bias", False), data.get("pointwise_activation", "none"))

    @staticmethod
    def _key(fields: dict[str, Any]) -> str:
        canonical = {**fields, "depthwise": {key: value for key, value in fields["depthwise"].items()
                                             if key != "padding_mode"}}
        return "sep-" + hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def workload_key(self) -> str:
        """A stable name of what is computed (however the padding was given)."""
        return self._key(self.to_dict())

    @property
    def tuning_key(self) -> str:
        """The name tuning records are kept under: the loop nest's, shared with and without the
        fused epilogues (which add no loop)."""
        return self.without_epilogue()._key(self.without_epilogue().to_dict())

    def without_epilogue(self) -> "SeparableSpec":
        """The same convolutions with no bias and no activation."""
        return SeparableSpec(self.depthwise.without_epilogue(), self.out_channels)

    def sum_stages(self) -> tuple[SumStage, ...]:
        """The depthwise window sum finished by the ``depthwise`` block, then the pointwise sum
        finished by the ``epilogue``."""
        return (SumStage(BLOCK_CONV, BLOCK_DEPTHWISE, self.depthwise.with_bias, self.depthwise.activation),
                SumStage(BLOCK_POINTWISE, BLOCK_EPILOGUE, self.with_pointwise_bias, self.pointwise_activation))

    def describe(self) -> str:
        """One line for people: the depthwise step, then the pointwise step and its epilogue."""
        depthwise = self.depthwise.describe().rsplit(" -> ", 1)[0]
        epilogue = describe_epilogue(self.with_pointwise_bias, self.pointwise_activation)
        return (f"separable {depthwise} -> pointwise {self.depthwise_channels}->{self.out_channels}{epilogue} "
                f"-> {'x'.join(str(size) for size in self.output_shape)}")

    # --- compute and reference -----------------------------------------------------
    def te_tensors(self) -> list:
        """The TE tensors of the kernel's arguments (``arguments`` order): blocks ``pad``,
        ``conv``, ``depthwise`` (the depthwise step's epilogue), ``pointwise`` and ``epilogue``."""
        return _te_tensors(self)

    def reference(self, input: np.ndarray, depthwise_filter: np.ndarray, pointwise_filter: np.ndarray,
                  *biases: np.ndarray) -> np.ndarray:
        """This spec computed in float64 by NumPy: the depthwise reference, then the 1x1 product.

        Args:
            biases: the biases the spec declares, in ``arguments`` order.

        Returns:
            The output in ``data_format``, float64.
        """
        biases = list(biases)
        depthwise_bias = biases.pop(0) if self.depthwise.with_bias else None
        pointwise_bias = biases.pop(0) if self.with_pointwise_bias else None
        if biases:
            raise InvalidSpecError(f"biases: the spec declares {len(self.arguments) - 4} bias(es), got more")
        middle = self.depthwise.reference(input, depthwise_filter, depthwise_bias)
        weights = np.asarray(pointwise_filter, dtype=np.float64)[0, 0]  # [C*M, O]
        if self.data_format == "NHWC":
            product = middle @ weights
        else:
            product = np.einsum("nkhw,ko->nohw", middle, weights)
        return numpy_epilogue(product, pointwise_bias, self.pointwise_activation, self.channel_axis)


def _te_tensors(spec: SeparableSpec) -> list:
    from tvm import te

    depthwise = spec.depthwise
    dtype = spec.dtype
    acc_dtype = accumulator_dtype(dtype)
    data = te.placeholder(depthwise.input_shape, dtype, name="input")
    depthwise_filter = te.placeholder(depthwise.filter_shape, dtype, name="depthwise_filter")
    pointwise_filter = te.placeholder(spec.pointwise_filter_shape, dtype, name="pointwise_filter")
    depthwise_bias = (te.placeholder((spec.depthwise_channels,), dtype, name="depthwise_bias")
                      if depthwise.with_bias else None)
    pointwise_bias = (te.placeholder((spec.out_channels,), dtype, name="pointwise_bias")
                      if spec.with_pointwise_bias else None)
    # NCHW: the depthwise step keeps whole vectors of columns, and so does the pointwise sum,
    # vectorized along them too; the epilogue stores the real columns.
    middle = te_depthwise(depthwise, data, depthwise_filter, depthwise_bias, BLOCK_DEPTHWISE, whole_vectors=True)
    channel = te.reduce_axis((0, spec.depthwise_channels), name="channel")
    if spec.data_format == "NHWC":
        summed = te.compute(
            spec.output_shape,
            lambda n, i, j, o: te.sum(middle[n, i, j, channel].astype(acc_dtype)
                                      * pointwise_filter[0, 0, channel, o].astype(acc_dtype), axis=channel),
            name=BLOCK_POINTWISE)
    else:
        summed = te.compute(
            (spec.batch, spec.out_channels, *middle.shape[2:]),
            lambda n, o, i, j: te.sum(middle[n, channel, i, j].astype(acc_dtype)
                                      * pointwise_filter[0, 0, channel, o].astype(acc_dtype), axis=channel),
            name=BLOCK_POINTWISE)

    def finish(*index):
        out_channel = index[spec.channel_axis]
        value = te_epilogue(summed[index], pointwise_bias[out_channel] if pointwise_bias is not None else None,
                            spec.pointwise_activation, acc_dtype)
        return value.astype(dtype)

    output = te.compute(spec.output_shape, finish, name=BLOCK_EPILOGUE)
    biases = [bias for bias in (depthwise_bias, pointwise_bias) if bias is not None]
    return [data, depthwise_filter, pointwise_filter, *biases, output]
