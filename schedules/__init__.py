"""Hand-written TensorIR schedules, one module per target family.

Each family module has ``NAME`` and ``schedule(sch, spec, target) -> Schedule``. The rule for
the target's family is applied; where it cannot handle a spec, the generic schedule is, and the
name returned says which was used.
"""

from __future__ import annotations

import importlib
import logging

from ..compute import depthwise_prim_func
from ..errors import BuildError
from ..spec import DepthwiseSpec

logger = logging.getLogger(__name__)

FAMILIES = ("x86", "arm", "cuda")


def family_module(family: str):
    """The schedule module of `family` (``x86``, ``arm`` or ``cuda``)."""
    if family not in FAMILIES:
        raise BuildError(f"target family: no schedules for {family!r}; expected one of {', '.join(FAMILIES)}")
    return importlib.import_module(f"{__name__}.{family}")


def hand_schedule(spec: DepthwiseSpec, target):
    """The hand schedule of `target`'s family applied to `spec`'s PrimFunc.

    Returns:
        ``(schedule, name)``, name being e.g. ``"hand:x86"`` or ``"hand:generic"`` after a fallback.
    """
    import tvm

    func = depthwise_prim_func(spec)
    rule = family_module(target.family)
    try:
        return rule.schedule(tvm.s_tir.Schedule(func), spec, target), rule.NAME
    except Exception as exc:  # a TVM schedule error: fall back rather than fail
        if target.family == "cuda":
            raise BuildError(f"the CUDA schedule failed for {spec.describe()}: {exc}") from exc
        logger.warning("%s schedule failed for %s (%s); using the generic schedule",
                       rule.NAME, spec.describe(), str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    generic = importlib.import_module(f"{__name__}.generic")
    return generic.schedule(tvm.s_tir.Schedule(func), spec, target), generic.NAME
