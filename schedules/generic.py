"""The plain schedule every target can fall back to: correct for any spec, not fast.

Padding inlined, the outer two output loops fused and run in parallel, each output element's
window sum kept in a register. Used when a family's rule cannot handle a spec.
"""

from __future__ import annotations

from ..compute import BLOCK_CONV, BLOCK_EPILOGUE, BLOCK_PAD
from ..spec import DepthwiseSpec

NAME = "hand:generic"


def schedule(sch, spec: DepthwiseSpec, target):
    """Apply the generic CPU schedule to `sch`."""
    sch.compute_inline(sch.get_sblock(BLOCK_PAD))
    conv, epilogue = sch.get_sblock(BLOCK_CONV), sch.get_sblock(BLOCK_EPILOGUE)
    loops = sch.get_loops(epilogue)
    sch.parallel(sch.fuse(loops[0], loops[1]))
    sch.compute_at(conv, loops[-1])
    sch.set_scope(conv, 0, "local")
    return sch
