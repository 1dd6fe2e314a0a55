"""The protocol every schedule rule follows, in the manner of TVM's dlight.

A rule is a module with ``NAME`` and ``apply(func, spec, target, tunable=False, hand_decisions=False,
dwc_passes=True)`` returning a ``tvm.s_tir.Schedule``, or None for "not mine" (another family's
target, an op it does not schedule). ``func`` is the op's PrimFunc, or a Schedule of it
(MetaSchedule's design spaces hand one over, with their own random state). With ``tunable``, the
rule's free parameters are MetaSchedule decisions (``hand_decisions`` fixes them to the hand
values, the hand schedule as a point of the space); without, the hand values. ``dwc_passes``
says the kernel is compiled with dwc's TIR pipeline (``toolchain.compile_for``: dwc's builds and
its tuner); where it is False (a Relax model the user compiles with ``tvm.compile``), a rule
makes nothing whose safety rests on dwc's passes (the x86 NCHW windows read under masks).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class AlignedVariants:
    """A rule's kernels for NHWC inputs off a vector boundary (``x86.aligned_variants``).

    Attributes:
        by_offset: ``{offset in bytes past a vector boundary: (channel blocks, make)}``,
            ``make()`` returning the variant's schedule; empty where there are none.
        max_threads: the variants serve calls on up to so many threads (None: any number).
    """

    by_offset: dict[int, tuple[Any, Callable[[], Any]]]
    max_threads: int | None = None


def as_schedule(func: Any):
    """`func` as a TensorIR schedule: a Schedule as it is, a PrimFunc or IRModule wrapped."""
    import tvm

    if isinstance(func, tvm.s_tir.Schedule):
        return func
    return tvm.s_tir.Schedule(func)


def read_index(sch: Any, block: Any, buffer_name: str) -> int:
    """The position of `block`'s read of the buffer named `buffer_name` (what ``cache_read``
    takes). Positions are not fixed: inlining re-derives a block's reads, and a conv block that
    starts from the bias reads the bias first."""
    names = [str(region.source.name) for region in sch.get(block).reads]
    if buffer_name not in names:
        raise ValueError(f"internal: block {sch.get(block).name_hint} reads {names}, not {buffer_name}")
    return names.index(buffer_name)


# The scope of register-tile sums on CPUs. TVM's LowerTVMBuiltin puts a CPU allocation on the
# stack only when its scope is "global" and it is under 1 KB (kMaxStackAlloca); any other scope,
# "local" included, becomes a TVMBackendAllocWorkspace / FreeWorkspace call pair per tile, and
# the sums' last store into that workspace stays in the hot loop. On the stack, LLVM promotes
# the sums to registers and drops the buffer.
CPU_REGISTER_SCOPE = "global"


def sums_in_registers(sch: Any, block: Any) -> None:
    """Give `block`'s output (a register tile's sums, computed at its tile) the scope that lets
    LLVM keep it in registers on a CPU (see ``CPU_REGISTER_SCOPE``)."""
    sch.set_scope(block, 0, CPU_REGISTER_SCOPE)


def register_sums_on_stack(sch: Any) -> None:
    """Give every block of `sch` that writes a ``local`` buffer the CPU register scope (see
    ``CPU_REGISTER_SCOPE``). For schedules replayed from tuning records whose traces say
    ``local`` (the records made before the CPU rules moved their sums to the stack, the shipped
    ones included): the record's decisions stay, the per-tile workspace calls go."""
    pending = list(sch.get_child_blocks(sch.get_sblock("root")))
    while pending:
        block = pending.pop()
        pending.extend(sch.get_child_blocks(block))
        for index, region in enumerate(sch.get(block).writes):
            if region.source.scope() == "local":
                sch.set_scope(block, index, CPU_REGISTER_SCOPE)
