"""The plain CPU rule every CPU target falls back to: correct for any spec, not fast.

Padding inlined, the outer two output loops fused and run in parallel, each output element's
window sum kept in a register, the epilogue applied as it is stored. Taken where no family rule
said "mine" (a CPU family dwc has no rule for, an op the family rule does not schedule).
"""

from __future__ import annotations

from typing import Any

from ..ops.primfunc import BLOCK_CONV, BLOCK_EPILOGUE, BLOCK_PAD
from .base import as_schedule

NAME = "hand:generic"


def apply(func: Any, spec: Any, target: Any, tunable: bool = False, hand_decisions: bool = False):
    """The generic rule (see ``base.py``): any CPU target; None for GPUs, whose loops must be
    bound to threads. It has no free parameters, so `tunable` changes nothing."""
    if target.family == "cuda":
        return None
    sch = as_schedule(func)
    sch.compute_inline(sch.get_sblock(BLOCK_PAD))
    conv, epilogue = sch.get_sblock(BLOCK_CONV), sch.get_sblock(BLOCK_EPILOGUE)
    loops = sch.get_loops(epilogue)
    sch.parallel(sch.fuse(loops[0], loops[1]))
    sch.compute_at(conv, loops[-1])
    sch.set_scope(conv, 0, "local")
    return sch
