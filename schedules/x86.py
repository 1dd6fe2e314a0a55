"""x86 (AVX2 / AVX-512) schedule rule for depthwise convolution.

The story: one vector of channels (8 float32 lanes on AVX2, 16 on AVX-512) by a tile of up to
7 output columns is the register tile: 7 accumulators plus an input and a filter vector fit
AVX2's 16 registers, and a probe on AVX-512 found 4-7 columns 1.5x faster than 14-16 (register
pressure) and wider channel blocks 1.3-1.9x slower. NCHW vectorizes along output columns
instead, with 4 rows per register tile.
"""

from __future__ import annotations

from ..compute import accumulator_dtype
from ..spec import DepthwiseSpec
from .cpu import CpuTiling, plan_tiling, schedule_cpu

NAME = "hand:x86"


def default_tiling(spec: DepthwiseSpec, target) -> CpuTiling:
    """The hand-picked tiling for `spec` on the x86 `target`."""
    lanes = target.lanes(accumulator_dtype(spec))
    if spec.data_format == "NHWC":
        return plan_tiling(spec, lanes, vectors_per_block=1, preferred_tile=7, smallest_tile=4)
    return plan_tiling(spec, lanes, vectors_per_block=1, preferred_tile=4, smallest_tile=2)


def schedule(sch, spec: DepthwiseSpec, target, tiling: CpuTiling | None = None):
    """Apply the x86 schedule to `sch` (a TensorIR schedule of the depthwise PrimFunc)."""
    return schedule_cpu(sch, spec, tiling or default_tiling(spec, target))
