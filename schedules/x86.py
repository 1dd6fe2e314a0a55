"""x86 (AVX2 / AVX-512) schedule rule for depthwise convolution.

The story: a register tile is one vector of channels (8 float32 lanes on AVX2, 16 on
AVX-512) by a small block of output pixels; the filter window is unrolled around it, so every
input vector loaded feeds several accumulators. Measured on the MobileNetV2 layers (one
thread, AVX-512, benchmarks/results/tiling-sweep-*.json): 2 rows x 4 columns is best or within
5% on the large 3x3 layers, where two output rows share two of their three input rows; 2x2 on
14x14 outputs; a single row of 7 columns on 7x7 outputs. A 5x5 window or a dilation shares fewer
inputs between rows and prefers one row of 4-7 columns. Wider channel blocks (2 vectors) were
never better. NCHW vectorizes along output columns instead, with up to 8 rows per register tile
(against 4: 0.975x the time in geomean over the MobileNetV2 layers, 0.89x on 7x7 planes, whose
tile is then the whole plane; 1 thread, Emerald Rapids, 21 paired rounds).
"""

from __future__ import annotations

from typing import Any

from ..ops.depthwise import DepthwiseSpec
from ..ops.primfunc import accumulator_dtype
from .cpu import CpuTiling, apply_cpu_rule, plan_tiling
from .cpu_separable import apply_separable_rule

NAME = "hand:x86"

SMALL_WINDOW_TILES = ((2, 4), (2, 2), (1, 7), (1, 4), (1, 8))
LARGE_WINDOW_TILES = ((1, 4), (1, 7), (1, 8), (1, 5), (1, 6))
NCHW_TILES = ((8, 1),)


def default_tiling(spec: DepthwiseSpec, target) -> CpuTiling:
    """The hand-picked tiling for `spec` on the x86 `target`."""
    lanes = target.lanes(accumulator_dtype(spec.dtype))
    if spec.data_format == "NCHW":
        return plan_tiling(spec, lanes, 1, NCHW_TILES)
    small_window = spec.filter_height * spec.filter_width <= 9 and spec.dilations == (1, 1)
    return plan_tiling(spec, lanes, 1, SMALL_WINDOW_TILES if small_window else LARGE_WINDOW_TILES)


def apply(func: Any, spec: Any, target: Any, tunable: bool = False, hand_decisions: bool = False):
    """The x86 rule (see ``base.py``): None unless `target` is of the x86 family."""
    registers = 32 if target.lanes("float32") >= 16 else 16
    return (apply_cpu_rule(func, spec, target, "x86", default_tiling, tunable, hand_decisions)
            or apply_separable_rule(func, spec, target, "x86", registers, tunable,
                                    hand_decisions))
