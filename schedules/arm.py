"""ARM (aarch64 NEON) schedule rule for depthwise convolution.

The story: NEON vectors hold 4 float32 lanes and aarch64 has 32 of them, so a channel block is
two vectors (8 channels: one 32-byte span of NHWC input per pixel) by a tile of up to 6 output
columns: 12 accumulators, leaving room for inputs and filter taps. NCHW vectorizes along
output columns, 4 rows per register tile.
"""

from __future__ import annotations

from ..compute import accumulator_dtype
from ..spec import DepthwiseSpec
from .cpu import CpuTiling, plan_tiling, schedule_cpu

NAME = "hand:arm"


def default_tiling(spec: DepthwiseSpec, target) -> CpuTiling:
    """The hand-picked tiling for `spec` on the ARM `target`."""
    lanes = target.lanes(accumulator_dtype(spec))
    if spec.data_format == "NHWC":
        return plan_tiling(spec, lanes, vectors_per_block=2, preferred_tile=6, smallest_tile=3)
    return plan_tiling(spec, lanes, vectors_per_block=2, preferred_tile=4, smallest_tile=2)


def schedule(sch, spec: DepthwiseSpec, target, tiling: CpuTiling | None = None):
    """Apply the ARM schedule to `sch` (a TensorIR schedule of the depthwise PrimFunc)."""
    return schedule_cpu(sch, spec, tiling or default_tiling(spec, target))
