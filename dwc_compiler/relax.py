"""dwc inside TVM Relax models: a pass that routes depthwise convolutions to dwc's kernels.

``offload_depthwise(mod, target)`` finds every ``relax.nn.conv2d`` with ``groups`` equal to its
input's channels (NCHW or NHWC data, PyTorch's and ONNX's ``OIHW`` weights, static shapes,
float32/16/64) and replaces it, together with what follows it alone (a bias ``add``, an
inference ``batch_norm``, a ``clip(0, 6)`` or ``relu``, in that order, each optional; the
BatchNorm folded into the weights and bias), with ``call_tir`` of a dwc PrimFunc named
``dwc_<workload key>``, already scheduled for `target` (its tuning record, else dwc's rule) and
marked scheduled, so that TVM's pipeline compiles it as it is. TVM's pipeline does not run dwc's
TIR passes, so nothing in these kernels rests on them (``build.scheduled``'s `dwc_passes`): the
x86 NCHW kernels copy each padded plane rather than read windows under masks. Where a pointwise (1x1)
``conv2d`` reads that result alone (with its own bias add, BatchNorm and activation), as in
every MobileNet block, the two become one call of dwc's fused separable kernel: the depthwise
result never reaches memory, and the 1x1 convolution is dwc's, not TVM's. The weights go to the
kernels through Relax ops (BatchNorm folding, relayout into TF's layouts for the separable
kernel), which TVM's ``FoldConstant`` computes at build time for a model's constant weights.
The rest of the model is left to TVM. The result builds with
``tvm.compile(mod, target=dwc_compiler.relax.tvm_target(target))``, or with :func:`compile`
(the same with dwc's TIR pipeline for CPU targets, whose passes then apply to the whole model,
and CUDA code compiled by nvcc as dwc's own kernels are).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import tvm
from tvm import relax

from .build import scheduled
from .runtime import runtime_for
from .errors import InvalidSpecError
from .ops.depthwise import DepthwiseSpec
from .ops.separable import SeparableSpec
from .targets import TargetInfo, resolve_target

_DTYPES = ("float32", "float16", "float64")


def tvm_target(target: str | TargetInfo = "host"):
    """The ``tvm.target.Target`` of a dwc target name, for ``tvm.compile`` of an offloaded module."""
    return resolve_target(target).tvm()


def compile(mod: tvm.IRModule, target: str | TargetInfo = "host"):
    """``tvm.compile(mod)`` for a dwc target the way dwc builds its own kernels: for CUDA
    targets every kernel of the model is compiled by nvcc to the target's sm (TVM's default
    hook wants NVRTC from the cuda-bindings package, or ``TVM_CUDA_COMPILE_MODE=nvcc`` inside a
    ``with target:`` block).

    Raises:
        BuildError: TVM could not compile the module.
    """
    info = resolve_target(target)
    return runtime_for(info).compile(mod, info)


def _static_shape(expr: relax.Expr) -> tuple[int, ...] | None:
    info = expr.ty
    if not isinstance(info, relax.TensorType) or info.shape is None:
        return None
    dims = info.shape.values if isinstance(info.shape, relax.ShapeExpr) else None
    if dims is None or not all(isinstance(dim, tvm.tirx.IntImm) for dim in dims):
        return None
    return tuple(int(dim) for dim in dims)


def depthwise_spec_of(call: relax.Call) -> DepthwiseSpec | None:
    """The dwc spec of a ``relax.nn.conv2d`` call when it is a depthwise convolution dwc computes
    (see the module doc), else None."""
    if not isinstance(call, relax.Call) or call.op != tvm.ir.Op.get("relax.nn.conv2d"):
        return None
    attrs = call.attrs
    data_layout, kernel_layout = str(attrs.data_layout), str(attrs.kernel_layout)
    input_shape, weight_shape = _static_shape(call.args[0]), _static_shape(call.args[1])
    dtype = str(call.args[0].ty.dtype)
    out_dtype = "" if attrs.out_dtype is None else str(attrs.out_dtype)
    if (data_layout not in ("NCHW", "NHWC") or kernel_layout != "OIHW" or str(attrs.out_layout) != data_layout
            or input_shape is None or weight_shape is None or dtype not in _DTYPES
            or str(call.args[1].ty.dtype) != dtype or out_dtype not in ("", "void", dtype)):
        return None
    channels = input_shape[1] if data_layout == "NCHW" else input_shape[3]
    if int(attrs.groups) != channels:
        return None
    top, left, bottom, right = (int(value) for value in attrs.padding)
    try:
        return DepthwiseSpec.create(input_shape, weight_shape, [int(v) for v in attrs.strides],
                                    [top, bottom, left, right], data_layout, [int(v) for v in attrs.dilation], dtype,
                                    filter_format="OIHW")
    except InvalidSpecError:
        return None


def pointwise_out_channels(call: relax.Call, depthwise: DepthwiseSpec, source: relax.Var) -> int | None:
    """O, when `call` is a 1x1 ``relax.nn.conv2d`` of `source` (the result of `depthwise`) that
    dwc's separable kernel computes (stride 1, no padding, no groups, the same layout and dtype,
    an ``OIHW`` weight ``[O, C*M, 1, 1]``), else None."""
    if not isinstance(call, relax.Call) or call.op != tvm.ir.Op.get("relax.nn.conv2d") \
            or not call.args[0].same_as(source):
        return None
    attrs = call.attrs
    weight_shape = _static_shape(call.args[1])
    out_dtype = "" if attrs.out_dtype is None else str(attrs.out_dtype)
    if (str(attrs.data_layout) != depthwise.data_format or str(attrs.kernel_layout) != "OIHW"
            or str(attrs.out_layout) != depthwise.data_format or int(attrs.groups) != 1
            or [int(v) for v in attrs.strides] != [1, 1] or [int(v) for v in attrs.padding] != [0, 0, 0, 0]
            or [int(v) for v in attrs.dilation] != [1, 1] or weight_shape is None or len(weight_shape) != 4
            or weight_shape[1:] != (depthwise.out_channels, 1, 1) or str(call.args[1].ty.dtype) != depthwise.dtype
            or out_dtype not in ("", "void", depthwise.dtype)):
        return None
    return weight_shape[0]


def _bias_operand(call: relax.Call, channels: int, data_format: str, dtype: str,
                  conv_var: relax.Var) -> relax.Expr | None:
    """The other operand of ``add(conv, bias)`` when it is a bias of `channels` values (one per
    output channel of `conv_var`), else None."""
    if not isinstance(call, relax.Call) or call.op != tvm.ir.Op.get("relax.add") or len(call.args) != 2:
        return None
    operands = [arg for arg in call.args if not arg.same_as(conv_var)]
    if len(operands) != 1:
        return None
    shape = _static_shape(operands[0])
    if shape is None or str(operands[0].ty.dtype) != dtype:
        return None
    expected = {(channels,), (1, channels, 1, 1)} if data_format == "NCHW" else {(channels,), (1, 1, 1, channels)}
    return operands[0] if shape in expected else None


def _activation_of(call: relax.Call, source: relax.Var) -> str | None:
    """``"relu"`` for ``relu(source)``, ``"relu6"`` for ``clip(source, 0, 6)``, else None."""
    if not isinstance(call, relax.Call) or not call.args or not call.args[0].same_as(source):
        return None
    if call.op == tvm.ir.Op.get("relax.nn.relu"):
        return "relu"
    if call.op == tvm.ir.Op.get("relax.clip") and len(call.args) == 3:
        bounds = [getattr(arg, "value", None) for arg in call.args[1:]]
        if all(isinstance(bound, (int, float)) for bound in bounds) and [float(b) for b in bounds] == [0.0, 6.0]:
            return "relu6"
    return None


@dataclasses.dataclass(frozen=True)
class _Epilogue:
    """What follows a convolution alone and folds into its kernel: the bindings (indices, the
    convolution's first), the variable the last one binds, a per-output-channel `scale` the
    weights take (a folded BatchNorm's; None: 1) and `bias` (None: 0), both ``[channels]``
    expressions, and the activation."""

    group: tuple[int, ...]
    last: relax.Var
    scale: relax.Expr | None
    bias: relax.Expr | None
    activation: str


def _batch_norm_of(call: relax.Call, source: relax.Var, channels: int, data_format: str, dtype: str):
    """(scale, shift), ``[channels]`` expressions, of an inference ``batch_norm(source)`` over the
    channel axis with static parameters of `dtype`, else None: ``(x - mean) / sqrt(var + eps) *
    gamma + beta`` is ``x * scale + shift``."""
    if not isinstance(call, relax.Call) or call.op != tvm.ir.Op.get("relax.nn.batch_norm") \
            or not call.args[0].same_as(source):
        return None
    attrs = call.attrs
    gamma, beta, mean, variance = call.args[1:5]
    if bool(attrs.training) or int(attrs.axis) != (1 if data_format == "NCHW" else 3) or any(
            _static_shape(arg) != (channels,) or str(arg.ty.dtype) != dtype for arg in (gamma, beta, mean, variance)):
        return None
    epsilon = relax.const(float(attrs.epsilon), dtype)
    inverse = relax.op.rsqrt(relax.op.add(variance, epsilon))
    scale = relax.op.multiply(inverse, gamma) if bool(attrs.scale) else inverse
    shifted = relax.op.negative(relax.op.multiply(mean, scale))
    return scale, relax.op.add(shifted, beta) if bool(attrs.center) else shifted


def _first_item_of(bindings: list[relax.Binding], index: int, uses: dict[Any, list[int]]) -> int | None:
    """The index of the binding of ``bindings[index].var[0]`` when that is the tuple's only use."""
    following = _single_user(bindings, index, uses)
    if following is None:
        return None
    value = bindings[following].value
    tuple_var = bindings[index].var
    return following if isinstance(value, relax.TupleGetItem) and value.index == 0 \
        and value.tuple_value.same_as(tuple_var) else None


class _Offloader:
    """Rewrites the dataflow blocks of one Relax function; PrimFuncs go into `builder`."""

    def __init__(self, builder: relax.BlockBuilder, target: TargetInfo, records: Any, fuse_pointwise: bool) -> None:
        self.builder, self.target, self.records, self.fuse_pointwise = builder, target, records, fuse_pointwise
        self.kernels: dict[str, tvm.ir.GlobalVar] = {}

    def kernel(self, spec: DepthwiseSpec | SeparableSpec) -> tvm.ir.GlobalVar:
        name = f"dwc_{spec.workload_key.replace('-', '_')}"
        if name not in self.kernels:
            # The module is compiled by tvm.compile, without dwc's TIR passes (its users' call).
            schedule, schedule_name, _ = scheduled(spec, self.target, self.records, dwc_passes=False)
            func = schedule.mod["main"].with_attr("global_symbol", name).with_attr("tirx.is_scheduled", True)
            func = func.with_attr("dwc.schedule", schedule_name)
            self.kernels[name] = self.builder.add_func(func, name)
        return self.kernels[name]

    def rewrite_block(self, block: relax.DataflowBlock) -> relax.DataflowBlock:
        bindings = list(block.bindings)
        used_vars = _uses(bindings)
        replaced: dict[int, list[relax.Binding]] = {}
        dropped: set[int] = set()
        for index, binding in enumerate(bindings):
            spec = depthwise_spec_of(binding.value) if isinstance(binding, relax.VarBinding) else None
            if spec is None:
                continue
            epilogue = self._epilogue(bindings, used_vars, [index], spec.out_channels, spec.data_format, spec.dtype)
            depthwise = dataclasses.replace(spec, with_bias=epilogue.bias is not None, activation=epilogue.activation)
            group = epilogue.group
            following = _single_user(bindings, group[-1], used_vars) if self.fuse_pointwise else None
            out_channels = (pointwise_out_channels(bindings[following].value, depthwise, epilogue.last)
                            if following is not None else None)
            separable = _separable_spec(depthwise, out_channels) if out_channels is not None else None
            if separable is not None:
                pointwise = self._epilogue(bindings, used_vars, [following], out_channels, spec.data_format,
                                           spec.dtype)
                separable = dataclasses.replace(separable, with_pointwise_bias=pointwise.bias is not None,
                                                pointwise_activation=pointwise.activation)
                group = (*group, *pointwise.group)
                new_bindings = self._separable_call(separable, binding.value, epilogue,
                                                    bindings[following].value, pointwise)
            else:
                new_bindings = self._depthwise_call(depthwise, binding.value, epilogue)
            if any(member in dropped or member in replaced for member in group):
                continue  # an add already fused with another conv (two 1x1-sized convs added together)
            replaced[group[-1]] = new_bindings
            dropped.update(group[:-1])
        result = []
        for index, binding in enumerate(bindings):
            if index in dropped:
                continue
            result.extend(replaced.get(index, [binding]))
        return relax.DataflowBlock(result)

    @staticmethod
    def _epilogue(bindings, used_vars, group: list[int], channels: int, data_format: str, dtype: str) -> _Epilogue:
        """The bias add, inference BatchNorm and ReLU/ReLU6 (each optional, in that order) that
        read the last binding of `group` (a convolution's) alone, each in turn."""
        last, scale, bias, activation = bindings[group[-1]].var, None, None, "none"
        group = list(group)
        following = _single_user(bindings, group[-1], used_vars)
        if following is not None and (found := _bias_operand(bindings[following].value, channels, data_format, dtype,
                                                              last)) is not None:
            bias = relax.op.reshape(found, (channels,))
            group.append(following)
            last = bindings[following].var
            following = _single_user(bindings, following, used_vars)
        if following is not None and (norm := _batch_norm_of(bindings[following].value, last, channels, data_format,
                                                              dtype)) is not None:
            item = _first_item_of(bindings, following, used_vars)
            if item is not None:
                scale, shift = norm
                bias = shift if bias is None else relax.op.add(relax.op.multiply(bias, scale), shift)
                group += [following, item]
                last = bindings[item].var
                following = _single_user(bindings, item, used_vars)
        if following is not None and (found := _activation_of(bindings[following].value, last)) is not None:
            group.append(following)
            last = bindings[following].var
            activation = found
        return _Epilogue(tuple(group), last, scale, bias, activation)

    def _depthwise_call(self, spec: DepthwiseSpec, conv: relax.Call, epilogue: _Epilogue) -> list[relax.Binding]:
        """The bindings computing ``epilogue.last`` by the depthwise kernel of `spec` from `conv`'s
        operands, the epilogue's scale folded into the weight."""
        binder = _Binder(epilogue.last.name, spec.dtype)
        arguments = [conv.args[0], binder.scaled("weight", conv.args[1], epilogue.scale, spec.filter_shape)]
        if epilogue.bias is not None:
            arguments.append(binder.bind("bias", (spec.out_channels,), epilogue.bias))
        output_info = relax.TensorType(spec.output_shape, spec.dtype)
        return binder.bindings + [relax.VarBinding(epilogue.last, relax.call_tir(self.kernel(spec), arguments,
                                                                                 output_info))]

    def _separable_call(self, spec: SeparableSpec, conv: relax.Call, epilogue: _Epilogue, pointwise: relax.Call,
                        pointwise_epilogue: _Epilogue) -> list[relax.Binding]:
        """The bindings computing the pointwise epilogue's last variable by the separable kernel
        of `spec`: the depthwise `conv`'s input, both weights (scaled by their epilogues) relaid
        into TF's layouts (``[KH, KW, C, M]``, ``[1, 1, C*M, O]``), the biases."""
        depthwise, dtype, last = spec.depthwise, spec.dtype, pointwise_epilogue.last
        binder = _Binder(last.name, dtype)
        kernel_rows, kernel_cols = depthwise.filter_height, depthwise.filter_width
        depthwise_weight = binder.scaled("dw_weight", conv.args[1], epilogue.scale,
                                         (depthwise.out_channels, 1, kernel_rows, kernel_cols))
        per_channel = binder.bind("dw_cmhw", (depthwise.in_channels, depthwise.multiplier, kernel_rows, kernel_cols),
                                  relax.op.reshape(depthwise_weight, (depthwise.in_channels, depthwise.multiplier,
                                                                      kernel_rows, kernel_cols)))
        arguments = [conv.args[0], binder.bind("dw_hwcm", depthwise.filter_shape,
                                               relax.op.permute_dims(per_channel, [2, 3, 0, 1]))]
        pointwise_weight = binder.scaled("pw_weight", pointwise.args[1], pointwise_epilogue.scale,
                                         (spec.out_channels, spec.depthwise_channels, 1, 1))
        matrix = binder.bind("pw_oc", (spec.out_channels, spec.depthwise_channels),
                             relax.op.reshape(pointwise_weight, (spec.out_channels, spec.depthwise_channels)))
        transposed = binder.bind("pw_co", (spec.depthwise_channels, spec.out_channels),
                                 relax.op.permute_dims(matrix, [1, 0]))
        arguments.append(binder.bind("pw_hwio", spec.pointwise_filter_shape,
                                     relax.op.reshape(transposed, spec.pointwise_filter_shape)))
        for bias, count, name in ((epilogue.bias, spec.depthwise_channels, "dw_bias"),
                                  (pointwise_epilogue.bias, spec.out_channels, "pw_bias")):
            if bias is not None:
                arguments.append(binder.bind(name, (count,), bias))
        output_info = relax.TensorType(spec.output_shape, dtype)
        return binder.bindings + [relax.VarBinding(last, relax.call_tir(self.kernel(spec), arguments, output_info))]


class _Binder:
    """New dataflow bindings for a kernel's operands, named after the variable it computes."""

    def __init__(self, name: str, dtype: str) -> None:
        self.name, self.dtype = name, dtype
        self.bindings: list[relax.Binding] = []

    def bind(self, suffix: str, shape: tuple[int, ...], value: relax.Expr) -> relax.Var:
        """A new variable ``<name>_<suffix>`` of `shape` bound to `value`."""
        var = relax.DataflowVar(f"{self.name}_{suffix}", relax.TensorType(shape, self.dtype))
        self.bindings.append(relax.VarBinding(var, value))
        return var

    def scaled(self, suffix: str, weight: relax.Expr, scale: relax.Expr | None, shape: tuple[int, ...]) -> relax.Expr:
        """`weight` (``[out channels, ...]``) times `scale` per output channel, or `weight` itself."""
        if scale is None:
            return weight
        column = relax.op.reshape(scale, (shape[0], *([1] * (len(shape) - 1))))
        return self.bind(suffix, shape, relax.op.multiply(weight, column))


def _separable_spec(depthwise: DepthwiseSpec, out_channels: int) -> SeparableSpec | None:
    """The separable spec of `depthwise` (its filter as TF's ``HWCM``) followed by a 1x1
    convolution to `out_channels`, or None where TF's separable convolution refuses it (a
    stride together with a dilation)."""
    try:
        return SeparableSpec(dataclasses.replace(depthwise, filter_format="HWCM",
                                                 filter_shape=(depthwise.filter_height, depthwise.filter_width,
                                                               depthwise.in_channels, depthwise.multiplier)),
                             out_channels)
    except InvalidSpecError:
        return None


def _uses(bindings: list[relax.Binding]) -> dict[Any, list[int]]:
    """For each variable, the indices of the bindings whose values read it."""
    uses: dict[Any, list[int]] = {}
    for index, binding in enumerate(bindings):
        for var in _read_vars(binding.value):
            uses.setdefault(var, []).append(index)
    return uses


def _read_vars(expr: relax.Expr) -> list[relax.Var]:
    found: list[relax.Var] = []
    relax.analysis.post_order_visit(expr, lambda node: found.append(node) if isinstance(node, relax.Var) else None)
    return found


def _single_user(bindings: list[relax.Binding], index: int, uses: dict[Any, list[int]]) -> int | None:
    """The index of the one binding reading `bindings[index]`'s variable, when it is a dataflow
    variable read by exactly that binding (so that fusing it changes nothing else)."""
    var = bindings[index].var
    readers = uses.get(var, [])
    if not isinstance(var, relax.DataflowVar) or len(readers) != 1:
        return None
    return readers[0] if isinstance(bindings[readers[0]], relax.VarBinding) else None


def offload_depthwise(mod: tvm.IRModule, target: str | TargetInfo = "host", records: Any = None,
                      fuse_pointwise: bool = True) -> tvm.IRModule:
    """`mod` with every depthwise ``relax.nn.conv2d`` (and the bias add and ReLU/ReLU6 after it)
    computed by a dwc kernel scheduled for `target`, together with the 1x1 ``conv2d`` after it
    (and its bias add and activation) as one separable kernel where `fuse_pointwise` and the
    model allow (see the module doc).

    Args:
        mod: a Relax IRModule (e.g. from ``from_exported_program`` or ``from_onnx``).
        target: the dwc target the model will be compiled for (``host``, ``x86-avx512``,
            ``aarch64-neon``, ``cuda-sm90``, ...); its tuning records are used.
        records: a records directory besides the shipped ones (as :func:`dwc_compiler.build`).
        fuse_pointwise: fuse a following pointwise convolution into dwc's separable kernel.

    Returns:
        A new IRModule; `mod` is not changed.
    """
    info = resolve_target(target)
    builder = relax.BlockBuilder(mod)
    offloader = _Offloader(builder, info, records, fuse_pointwise)
    for global_var, func in list(mod.functions.items()):
        if not isinstance(func, relax.Function) or not isinstance(func.body, relax.SeqExpr):
            continue
        blocks = [offloader.rewrite_block(block) if isinstance(block, relax.DataflowBlock) else block
                  for block in func.body.blocks]
        body = relax.SeqExpr(blocks, func.body.body)
        builder.update_func(global_var, relax.Function(func.params, body, func.ret_ty, func.is_pure,
                                                       func.attrs, func.span))
    return relax.transform.Normalize()(builder.get())
