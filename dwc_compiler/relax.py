"""dwc inside TVM Relax models: a pass that routes depthwise convolutions to dwc's kernels.

``offload_depthwise(mod, target)`` finds every ``relax.nn.conv2d`` with ``groups`` equal to its
input's channels (NCHW or NHWC data, PyTorch's and ONNX's ``OIHW`` weights, static shapes,
float32/16/64) and replaces it, together with a bias ``add`` and a ``clip(0, 6)`` or ``relu``
that follow it alone, with ``call_tir`` of a dwc PrimFunc named ``dwc_<workload key>``, already
scheduled for `target` (its tuning record, else dwc's rule) and marked scheduled, so that TVM's
pipeline compiles it as it is. The rest of the model is left to TVM. The result builds with
``tvm.compile(mod, target=dwc_compiler.relax.tvm_target(target))``, or with :func:`compile`
(the same, and CUDA code compiled by nvcc as dwc's own kernels are).
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


def _bias_operand(call: relax.Call, spec: DepthwiseSpec, conv_var: relax.Var) -> relax.Expr | None:
    """The other operand of ``add(conv, bias)`` when it is a per-output-channel bias, else None."""
    if not isinstance(call, relax.Call) or call.op != tvm.ir.Op.get("relax.add") or len(call.args) != 2:
        return None
    operands = [arg for arg in call.args if not arg.same_as(conv_var)]
    if len(operands) != 1:
        return None
    shape = _static_shape(operands[0])
    if shape is None or str(operands[0].ty.dtype) != spec.dtype:
        return None
    channels = spec.out_channels
    expected = {(channels,), (1, channels, 1, 1)} if spec.data_format == "NCHW" else {(channels,), (1, 1, 1, channels)}
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


class _Offloader:
    """Rewrites the dataflow blocks of one Relax function; PrimFuncs go into `builder`."""

    def __init__(self, builder: relax.BlockBuilder, target: TargetInfo, records: Any) -> None:
        self.builder, self.target, self.records = builder, target, records
        self.kernels: dict[str, tvm.ir.GlobalVar] = {}

    def kernel(self, spec: DepthwiseSpec) -> tvm.ir.GlobalVar:
        name = f"dwc_{spec.workload_key.replace('-', '_')}"
        if name not in self.kernels:
            schedule, schedule_name, _ = scheduled(spec, self.target, self.records)
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
            group = [index]
            last, bias, activation = binding.var, None, "none"
            following = _single_user(bindings, index, used_vars)
            if following is not None and (bias := _bias_operand(bindings[following].value, spec, last)) is not None:
                group.append(following)
                last = bindings[following].var
                following = _single_user(bindings, following, used_vars)
            if following is not None and (found := _activation_of(bindings[following].value, last)) is not None:
                group.append(following)
                last = bindings[following].var
                activation = found
            if any(member in dropped or member in replaced for member in group):
                continue  # an add already fused with another conv (two 1x1-sized convs added together)
            fused = dataclasses.replace(spec, with_bias=bias is not None, activation=activation)
            new_bindings = []
            arguments = [binding.value.args[0], binding.value.args[1]]
            if bias is not None:
                flat = relax.DataflowVar(f"{last.name}_bias", relax.TensorType((spec.out_channels,), spec.dtype))
                new_bindings.append(relax.VarBinding(flat, relax.op.reshape(bias, (spec.out_channels,))))
                arguments.append(flat)
            output_info = relax.TensorType(spec.output_shape, spec.dtype)
            new_bindings.append(relax.VarBinding(last, relax.call_tir(self.kernel(fused), arguments, output_info)))
            replaced[group[-1]] = new_bindings
            dropped.update(group[:-1])
        result = []
        for index, binding in enumerate(bindings):
            if index in dropped:
                continue
            result.extend(replaced.get(index, [binding]))
        return relax.DataflowBlock(result)


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


def offload_depthwise(mod: tvm.IRModule, target: str | TargetInfo = "host", records: Any = None) -> tvm.IRModule:
    """`mod` with every depthwise ``relax.nn.conv2d`` (and the bias add and ReLU/ReLU6 after it)
    computed by a dwc kernel scheduled for `target` (see the module doc).

    Args:
        mod: a Relax IRModule (e.g. from ``from_exported_program`` or ``from_onnx``).
        target: the dwc target the model will be compiled for (``host``, ``x86-avx512``,
            ``aarch64-neon``, ``cuda-sm90``, ...); its tuning records are used.
        records: a records directory besides the shipped ones (as :func:`dwc_compiler.build`).

    Returns:
        A new IRModule; `mod` is not changed.
    """
    info = resolve_target(target)
    builder = relax.BlockBuilder(mod)
    offloader = _Offloader(builder, info, records)
    for global_var, func in list(mod.functions.items()):
        if not isinstance(func, relax.Function) or not isinstance(func.body, relax.SeqExpr):
            continue
        blocks = [offloader.rewrite_block(block) if isinstance(block, relax.DataflowBlock) else block
                  for block in func.body.blocks]
        body = relax.SeqExpr(blocks, func.body.body)
        builder.update_func(global_var, relax.Function(func.params, body, func.ret_ty, func.is_pure,
                                                       func.attrs, func.span))
    return relax.transform.Normalize()(builder.get())
