"""Design spaces for tuning, and schedules replayed from records.

dwc's own space is the family rule with its free parameters as MetaSchedule decisions
(``tunable``); the union adds MetaSchedule's generic space. A record's trace replays onto the
PrimFunc of the spec it is looked up for.
"""

from __future__ import annotations

from typing import Any

from ..ops.primfunc import prim_func
from ..schedules import apply_rules
from ..schedules.base import register_sums_on_stack

SPACE_OWN, SPACE_UNION = "dwc", "dwc+generic"
# What TVM raises (through its FFI, as Python's own exception types) for a trace that does not
# replay: another TVM version's records, a changed loop nest, a damaged entry.
REPLAY_ERRORS = (RuntimeError, ValueError, TypeError, KeyError, IndexError)


def module_of(spec: Any):
    """The IRModule ``{"main": PrimFunc of spec}`` that tuning works on."""
    import tvm

    return tvm.IRModule({"main": prim_func(spec)})


def own_space(spec: Any, target: Any, **generator_options):
    """dwc's rule for `target` with its tiling as sampled decisions, as a space generator."""
    from tvm.s_tir import meta_schedule as ms

    def space(sch):
        return apply_rules(sch, spec, target, tunable=True)[0]

    return ms.space_generator.ScheduleFn(space, **generator_options)


def design_space(spec: Any, target: Any, space: str):
    """The space generator named `space`: dwc's own space, or its union with the generic one."""
    from tvm.s_tir import meta_schedule as ms

    if space == SPACE_OWN:
        return own_space(spec, target)
    ours = own_space(spec, target, sch_rules=[], postprocs=[], mutator_probs={})
    return ms.space_generator.SpaceGeneratorUnion([ours, ms.space_generator.PostOrderApply()])


def hand_point(spec: Any, target: Any):
    """The hand schedule as a point of dwc's design space (its trace replays in the search)."""
    import tvm

    return apply_rules(tvm.s_tir.Schedule(module_of(spec)), spec, target, tunable=True, hand_decisions=True)[0]


def schedule_from_record(func: Any, entry: dict[str, Any], family: str):
    """The schedule a measurement record describes, replayed on the PrimFunc `func` for a
    target of schedule `family` (on CPUs, sums a record keeps in ``local`` buffers move to the
    stack: see ``schedules.base.register_sums_on_stack``).

    Raises:
        one of ``REPLAY_ERRORS`` when the trace does not replay.
    """
    import tvm
    from tvm.s_tir import meta_schedule as ms

    module = func if isinstance(func, tvm.IRModule) else tvm.IRModule({"main": func})
    record = ms.database.TuningRecord.from_json(entry["trace"], ms.database.Workload(module))
    schedule = tvm.s_tir.Schedule(module)
    record.trace.apply_to_schedule(schedule, remove_postproc=False)
    if family != "cuda":
        register_sums_on_stack(schedule)
    return schedule
