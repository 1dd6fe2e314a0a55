"""ARM (aarch64 NEON) schedule rule for depthwise convolution.

The story: NEON vectors hold 4 float32 lanes and aarch64 has 32 of them, so a channel block
is two vectors (8 channels: 32 contiguous bytes of an NHWC pixel) by a register tile of output
pixels, 2x2 or a row of 4: 8 accumulators, with room left for the inputs and filter taps. NCHW
vectorizes along output columns, 4 rows per register tile. (Timings under qemu say nothing of
a real core; these follow the x86 measurements scaled to NEON's register file.)
"""

from __future__ import annotations

from typing import Any

from ..ops.depthwise import DepthwiseSpec
from ..ops.primfunc import accumulator_dtype
from .cpu import CpuTiling, apply_cpu_rule, plan_tiling
from .cpu_separable import apply_separable_rule

NAME = "hand:arm"

NHWC_TILES = ((2, 2), (1, 4), (1, 7), (1, 5), (1, 6))
NCHW_TILES = ((4, 1),)
# The separable (fused) kernel's register tiles are sized to NEON's 32 vector registers.
NEON_REGISTERS = 32


def default_tiling(spec: DepthwiseSpec, target) -> CpuTiling:
    """The hand-picked tiling for `spec` on the ARM `target`."""
    lanes = target.lanes(accumulator_dtype(spec.dtype))
    return plan_tiling(spec, lanes, 2, NHWC_TILES if spec.data_format == "NHWC" else NCHW_TILES)


def apply(func: Any, spec: Any, target: Any, tunable: bool = False, hand_decisions: bool = False,
          dwc_passes: bool = True):
    """The arm rule (see ``base.py``): None unless `target` is of the arm family. Nothing it makes
    rests on dwc's passes (its NCHW kernels copy planes), so `dwc_passes` changes nothing."""
    return (apply_cpu_rule(func, spec, target, "arm", default_tiling, tunable, hand_decisions)
            or apply_separable_rule(func, spec, target, "arm", NEON_REGISTERS, tunable,
                                    hand_decisions))
