"""From an op's TE tensors to the PrimFunc every schedule rule starts from.

Every op names its blocks the same way, and the schedules rely on it:
- ``pad``: the zero-padded input, an ``if_then_else`` on the bounds (inlined by CPU schedules,
  so no padded copy is ever stored);
- ``conv``: the reduction over the filter window, accumulating in float32 for float16 inputs;
- ``epilogue``: bias, activation and the cast back to the storage dtype, as the output is written.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import BuildError

BLOCK_PAD = "pad"
BLOCK_CONV = "conv"
BLOCK_EPILOGUE = "epilogue"

_BUFFER_ARG = re.compile(r'(\w+): T\.Buffer\((\([^)]*\)), "(\w+)"\)')


def accumulator_dtype(dtype: str) -> str:
    """The dtype sums are kept in: float32 for float16 storage, the storage dtype otherwise."""
    return "float32" if dtype == "float16" else dtype


def prim_func(spec: Any):
    """The PrimFunc ``main(*spec.arguments)`` of `spec` (any op spec with ``te_tensors()``).

    Its buffer arguments promise only element alignment, not TVM's default of 64 bytes, so the
    generated code uses unaligned vector loads and any NumPy array (whose data NumPy aligns to
    16 bytes at best) can be passed without a copy.
    """
    from tvm import te

    tensors = list(spec.te_tensors())
    func = te.create_prim_func(tensors)
    return _with_element_alignment(func, spec.itemsize, len(tensors)).with_attr("global_symbol", "main")


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
