"""From an op's TE tensors to the PrimFunc every schedule rule starts from.

Every op names its blocks the same way, and the schedules rely on it:
- ``pad``: the zero-padded input, an ``if_then_else`` on the bounds (inlined by CPU schedules,
  so no padded copy is ever stored);
- ``conv``: the reduction over the filter window, accumulating in float32 for float16 inputs;
- ``epilogue``: bias, activation and the cast back to the storage dtype, as the output is written.

The separable op adds two between them: ``depthwise``, the depthwise step's own epilogue (its
bias and activation, rounded to the storage dtype as TF's separate ops would), and
``pointwise``, the 1x1 product's sum over channels, which ``epilogue`` then finishes.

The TE definition adds the bias in the epilogue; the PrimFunc starts each sum from its channel's
bias instead (the ``conv`` block's init), which spares one vector add per output vector and
leaves the epilogue only the activation (the fused kernel's cost over the plain one is then the
activation's min/max alone).
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from ..errors import BuildError

BLOCK_PAD = "pad"
BLOCK_CONV = "conv"
BLOCK_EPILOGUE = "epilogue"
BLOCK_DEPTHWISE = "depthwise"
BLOCK_POINTWISE = "pointwise"


class SumStage(NamedTuple):
    """One reduction of an op and the block that finishes it (adds its bias, applies its
    activation, casts and stores it): ``conv`` -> ``epilogue`` for depthwise convolution;
    ``conv`` -> ``depthwise`` and ``pointwise`` -> ``epilogue`` for the separable op. Specs list
    theirs in ``spec.sum_stages()``; the PrimFunc and the generic schedule rule follow them."""

    sum_block: str
    finish_block: str
    with_bias: bool
    activation: str


_BUFFER_ARG = re.compile(r'(\w+): T\.Buffer\((\([^)]*\)), "(\w+)"\)')


def accumulator_dtype(dtype: str) -> str:
    """The dtype sums are kept in: float32 for float16 storage, the storage dtype otherwise."""
    return "float32" if dtype == "float16" else dtype


def prim_func(spec: Any, channel_blocks: Any = None):
    """The PrimFunc ``main(*spec.arguments)`` of `spec` (any op spec with ``te_tensors()``).

    Its buffer arguments promise only element alignment, not TVM's default of 64 bytes, so the
    generated code uses unaligned vector loads and any NumPy array (whose data NumPy aligns to
    16 bytes at best) can be passed without a copy.

    With `channel_blocks` (a :class:`~.channel_blocks.ChannelBlocks`, for a depthwise spec), the
    sums run over the blocks' positions, and the bias and output, indexed by position in the
    op's compute, are read and stored at the channel each position computes: the signature is
    the same as without.
    """
    from tvm import te

    tensors = list(spec.te_tensors() if channel_blocks is None else spec.te_tensors(channel_blocks))
    func = _with_element_alignment(te.create_prim_func(tensors), spec.itemsize, len(tensors))
    for stage in spec.sum_stages():
        if stage.with_bias:
            func = _bias_as_accumulator_start(func, stage.sum_block, stage.finish_block, stage.activation)
    if channel_blocks is not None:
        by_position = [argument.name for argument in spec.arguments if argument.name == "bias"]
        func = _through_channel_blocks(func, channel_blocks, [*by_position, str(func.params[-1].name)],
                                       [tuple(argument.shape) for argument in spec.arguments])
    return func.with_attr("global_symbol", "main")


def _through_channel_blocks(func, channel_blocks: Any, buffer_names: list[str], shapes: list[tuple[int, ...]]):
    """`func` with each buffer of `buffer_names` indexed by block position along its last axis
    read and written at ``channel_blocks.channel(position)`` instead, and declared with the real
    channel count (`shapes`: every parameter's shape, as the spec declares it).

    Like :func:`_with_element_alignment`, a TVMScript rewrite: TE has no form for a store at a
    computed index, and before any schedule the indices of these accesses are plain block
    variables (checked: a buffer accessed otherwise fails the count)."""
    import tvm
    from tvm import tirx

    lines = func.script().split("\n")
    (signature_index,) = [i for i, line in enumerate(lines) if line.startswith("def main(")]
    for index, shape in enumerate(shapes):
        name = str(func.params[index].name)
        if name in buffer_names:
            declared = tuple(int(extent) for extent in func.params[index].ty.shape)
            before = re.compile(rf"(?<![\w.]){re.escape(name)}: T\.Buffer\({re.escape(_shape_text(declared))}")
            lines[signature_index], found = before.subn(f"{name}: T.Buffer({_shape_text(shape)}",
                                                        lines[signature_index])
            if found != 1:
                raise BuildError(f"internal: no single parameter {name} of shape {declared} in {lines[signature_index]}")
    body = "\n".join(lines[signature_index + 1:])
    for name in buffer_names:
        accesses = len(re.findall(rf"(?<![\w.]){re.escape(name)}\[", body))
        by_variables = re.compile(rf"(?<![\w.]){re.escape(name)}\[((?:\w+, )*)(\w+)\]")
        body, found = by_variables.subn(
            lambda m: f"{name}[{m.group(1)}{channel_blocks.channel(tirx.Var(m.group(2), 'int32'))}]", body)
        if not found or found != accesses:  # an access by anything else would be left by position
            raise BuildError(f"internal: {accesses - found} of the {accesses} accesses of {name} are not by "
                             f"block variables in {body[:400]}")
    rewritten = tvm.script.from_source("\n".join(lines[:signature_index + 1]) + "\n" + body)
    if [tuple(int(extent) for extent in param.ty.shape) for param in rewritten.params] != shapes:
        raise BuildError(f"internal: channel-block rewrite gave parameters {rewritten.params}, expected {shapes}")
    return rewritten


def _shape_text(shape: tuple[int, ...]) -> str:
    return f"({shape[0]},)" if len(shape) == 1 else f"({', '.join(str(extent) for extent in shape)})"


def _bias_as_accumulator_start(func, sum_block: str, epilogue_block: str, activation: str):
    """`func` with the bias moved from the `epilogue_block` into the `sum_block`'s init
    (``conv[..., k] = bias[k]`` before the window is summed), the epilogue left with only
    `activation` and the cast. The bias's index is found from the epilogue's reads, so any
    epilogue that reads ``sum[index]`` and ``bias[index[p]]`` is rewritten the same way."""
    from tvm import ir, tirx
    from tvm.s_tir import SBlock, Schedule

    from .epilogue import te_epilogue

    sch = Schedule(func)
    conv_rv, epilogue_rv = sch.get_sblock(sum_block), sch.get_sblock(epilogue_block)
    conv, epilogue = sch.get(conv_rv), sch.get(epilogue_rv)
    (accumulated,) = [region for region in epilogue.reads if region.source.same_as(conv.writes[0].source)]
    (bias_read,) = [region for region in epilogue.reads if not region.source.same_as(accumulated.source)]
    accumulated_index = [dim.min for dim in accumulated.region]
    channel_position = [i for i, index in enumerate(accumulated_index) if index.same_as(bias_read.region[0].min)]
    if len(channel_position) != 1 or not isinstance(conv.init, tirx.BufferStore):
        raise BuildError(f"internal: cannot start {sum_block} from the bias in {func.script()[:400]}")
    accumulator = conv.writes[0].source
    channel = conv.init.indices[channel_position[0]]
    bias = bias_read.source
    start = tirx.BufferLoad(bias, [channel])
    if bias.dtype != accumulator.dtype:
        start = start.astype(accumulator.dtype)
    new_conv = SBlock(conv.iter_vars, [*conv.reads, ir.TensorRegion(bias, [ir.Range.from_min_extent(channel, 1)], bias_read.ty)],
                      conv.writes, conv.name_hint, conv.body,
                      tirx.BufferStore(conv.init.buffer, start, conv.init.indices),
                      conv.alloc_buffers, conv.match_buffers, conv.annotations)
    store = epilogue.body
    value = te_epilogue(tirx.BufferLoad(accumulator, accumulated_index), None, activation, accumulator.dtype)
    if store.buffer.dtype != accumulator.dtype:
        value = value.astype(store.buffer.dtype)
    new_epilogue = SBlock(epilogue.iter_vars, [accumulated], epilogue.writes, epilogue.name_hint,
                          tirx.BufferStore(store.buffer, value, store.indices), epilogue.init,
                          epilogue.alloc_buffers, epilogue.match_buffers, epilogue.annotations)
    sch.state.replace(sch.get_sref(conv_rv), new_conv, {conv: new_conv})
    sch.state.replace(sch.get_sref(epilogue_rv), new_epilogue, {epilogue: new_epilogue})
    return sch.mod["main"]


def _with_element_alignment(func, itemsize: int, count: int):
    # TE has no way to set a placeholder's alignment and PrimFunc.specialize refuses to change
    # it, so the signature is rewritten in TVMScript, the one place the 0.27 API exposes it.
    import tvm

    lines = func.script().split("\n")
    (signature_index,) = [i for i, line in enumerate(lines) if line.startswith("def main(")]
    lines[signature_index], found = _BUFFER_ARG.subn(
        lambda m: f'{m.group(1)}: T.Buffer({m.group(2)}, "{m.group(3)}", align={itemsize})',
        lines[signature_index])
    if found != count:
        raise BuildError(f"internal: expected {count} buffer arguments in the PrimFunc signature, found {found}")
    relaxed = tvm.script.from_source("\n".join(lines))
    alignments = {param.ty.data_alignment for param in relaxed.params}
    if alignments != {itemsize}:
        raise BuildError(f"internal: buffer alignment rewrite gave {alignments}, expected {itemsize}")
    return relaxed
