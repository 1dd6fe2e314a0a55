"""The plain CPU rule every CPU target falls back to: correct for any spec, not fast.

Padding inlined; each sum the spec lists (``spec.sum_stages()``: the ``conv`` window sum, and
the separable op's ``pointwise`` sum) computed where the block that finishes it stores, kept in
a register; the finishing blocks' outer two loops fused and run in parallel. Taken where no
family rule said "mine" (a CPU family dwc has no rule for, an op the family rule does not
schedule).
"""

from __future__ import annotations

from typing import Any

from ..ops.primfunc import BLOCK_PAD
from .base import as_schedule, sums_in_registers

NAME = "hand:generic"


def apply(func: Any, spec: Any, target: Any, tunable: bool = False, hand_decisions: bool = False,
          dwc_passes: bool = True):
    """The generic rule (see ``base.py``): any CPU target; None for GPUs, whose loops must be
    bound to threads. It has no free parameters, so `tunable` changes nothing, and nothing it makes
    rests on dwc's passes (`dwc_passes`)."""
    if target.family == "cuda":
        return None
    sch = as_schedule(func)
    sch.compute_inline(sch.get_sblock(BLOCK_PAD))
    for stage in spec.sum_stages():
        summed, finish = sch.get_sblock(stage.sum_block), sch.get_sblock(stage.finish_block)
        loops = sch.get_loops(finish)
        sch.parallel(sch.fuse(loops[0], loops[1]))
        sch.compute_at(summed, loops[-1])
        sums_in_registers(sch, summed)
    return sch
