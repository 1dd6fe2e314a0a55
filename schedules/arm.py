"""ARM (aarch64 NEON) schedule rule for depthwise convolution.

The story: NEON vectors hold 4 float32 lanes and aarch64 has 32 of them, so a channel block
is two vectors (8 channels: 32 contiguous bytes of an NHWC pixel) by a register tile of output
pixels, 2x2 or a row of 4: 8 accumulators, with room left for the inputs and filter taps. NCHW
vectorizes along output columns, 4 rows per register tile. (Timings under qemu say nothing of
a real core; these follow the x86 measurements scaled to NEON's register file.)
"""

from __future__ import annotations

from ..compute import accumulator_dtype
from ..spec import DepthwiseSpec
from .cpu import CpuTiling, TileSearch, plan_tiling, schedule_cpu

NAME = "hand:arm"

NHWC_TILES = ((2, 2), (1, 4), (1, 7), (1, 5), (1, 6))
NCHW_TILES = ((4, 1),)


def default_tiling(spec: DepthwiseSpec, target) -> CpuTiling:
    """The hand-picked tiling for `spec` on the ARM `target`."""
    lanes = target.lanes(accumulator_dtype(spec))
    return plan_tiling(spec, lanes, 2, NHWC_TILES if spec.data_format == "NHWC" else NCHW_TILES)


def schedule(sch, spec: DepthwiseSpec, target, tiling: CpuTiling | None = None):
    """Apply the ARM schedule to `sch` (a TensorIR schedule of the depthwise PrimFunc)."""
    return schedule_cpu(sch, spec, tiling or default_tiling(spec, target))


def design_space(sch, spec: DepthwiseSpec, target, use_hand: bool = False):
    """The schedule with its tiling left to MetaSchedule (or fixed to the hand tiling)."""
    hand = default_tiling(spec, target)
    return schedule_cpu(sch, spec, hand, TileSearch(use_hand))
