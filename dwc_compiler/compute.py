"""The single TE definition of depthwise convolution, for every target and layout.

Three named blocks, which every schedule relies on:
- ``pad``: the zero-padded input, an ``if_then_else`` on the bounds (inlined by CPU schedules,
  so no padded copy is ever stored);
- ``conv``: the reduction over the filter window, accumulating in float32 for float16 inputs;
- ``epilogue``: the output write (the cast back to the storage dtype).
"""

from __future__ import annotations

import re

from .errors import BuildError
from .spec import DepthwiseSpec

BLOCK_PAD = "pad"
BLOCK_CONV = "conv"
BLOCK_EPILOGUE = "epilogue"


def accumulator_dtype(spec: DepthwiseSpec) -> str:
    """The dtype sums are kept in: float32 for float16 storage, the storage dtype otherwise."""
    return "float32" if spec.dtype == "float16" else spec.dtype


def depthwise_tensors(spec: DepthwiseSpec):
    """The TE tensors ``(input, filter, output)`` of the op described by `spec`."""
    from tvm import te, tirx

    nhwc = spec.data_format == "NHWC"
    pad_top, pad_bottom, pad_left, pad_right = spec.pads
    row_stride, col_stride = spec.strides
    row_dilation, col_dilation = spec.dilations
    multiplier = spec.multiplier
    acc_dtype = accumulator_dtype(spec)

    data = te.placeholder(spec.input_shape, spec.dtype, name="input")
    weights = te.placeholder(spec.filter_shape, spec.dtype, name="filter")
    padded_height = spec.in_height + pad_top + pad_bottom
    padded_width = spec.in_width + pad_left + pad_right

    def load_padded(n, channel, row, col):
        inside = tirx.all(row >= pad_top, row < spec.in_height + pad_top,
                          col >= pad_left, col < spec.in_width + pad_left)
        value = (data[n, row - pad_top, col - pad_left, channel] if nhwc
                 else data[n, channel, row - pad_top, col - pad_left])
        return tirx.if_then_else(tirx.likely(inside), value, tirx.const(0, spec.dtype))

    if nhwc:
        padded = te.compute((spec.batch, padded_height, padded_width, spec.in_channels),
                            lambda n, row, col, c: load_padded(n, c, row, col), name=BLOCK_PAD)
    else:
        padded = te.compute((spec.batch, spec.in_channels, padded_height, padded_width),
                            lambda n, c, row, col: load_padded(n, c, row, col), name=BLOCK_PAD)

    window_row = te.reduce_axis((0, spec.filter_height), name="window_row")
    window_col = te.reduce_axis((0, spec.filter_width), name="window_col")

    def window_sum(n, out_channel, out_row, out_col):
        channel = out_channel // multiplier
        row = out_row * row_stride + window_row * row_dilation
        col = out_col * col_stride + window_col * col_dilation
        pixel = padded[n, row, col, channel] if nhwc else padded[n, channel, row, col]
        weight = weights[window_row, window_col, channel, out_channel % multiplier]
        return te.sum(pixel.astype(acc_dtype) * weight.astype(acc_dtype), axis=[window_row, window_col])

    if nhwc:
        acc = te.compute(spec.output_shape, lambda n, i, j, k: window_sum(n, k, i, j), name=BLOCK_CONV)
    else:
        acc = te.compute(spec.output_shape, lambda n, k, i, j: window_sum(n, k, i, j), name=BLOCK_CONV)
    output = te.compute(spec.output_shape, lambda *idx: acc[idx].astype(spec.dtype), name=BLOCK_EPILOGUE)
    return data, weights, output


_BUFFER_ARG = re.compile(r'(\w+): T\.Buffer\((\([^)]*\)), "(\w+)"\)')


def depthwise_prim_func(spec: DepthwiseSpec):
    """The PrimFunc ``main(input, filter, output)`` every schedule starts from.

    Its buffer arguments promise only element alignment, not TVM's default of 64 bytes, so the
    generated code uses unaligned vector loads and any NumPy array (whose data NumPy aligns to
    16 bytes at best) can be passed without a copy.
    """
    import tvm
    from tvm import te

    func = te.create_prim_func(list(depthwise_tensors(spec)))
    return _with_element_alignment(func, spec.itemsize).with_attr("global_symbol", "main")


def _with_element_alignment(func, itemsize: int):
    # TE has no way to set a placeholder's alignment and PrimFunc.specialize refuses to change
    # it, so the signature is rewritten in TVMScript, the one place the 0.27 API exposes it.
    import tvm

    lines = func.script().split("\n")
    (signature_index,) = [i for i, line in enumerate(lines) if line.startswith("def main(")]
    lines[signature_index], count = _BUFFER_ARG.subn(
        lambda m: f'{m.group(1)}: T.Buffer({m.group(2)}, "{m.group(3)}", align={itemsize})',
        lines[signature_index])
    if count != 3:
        raise BuildError(f"internal: expected 3 buffer arguments in the PrimFunc signature, found {count}")
    relaxed = tvm.script.from_source("\n".join(lines))
    alignments = {param.ty.data_alignment for param in relaxed.params}
    if alignments != {itemsize}:
        raise BuildError(f"internal: buffer alignment rewrite gave {alignments}, expected {itemsize}")
    return relaxed
