"""The build pipeline, the only place that knows the whole path:

spec -> PrimFunc (``ops``) -> tuning record or schedule rule (``tuning.records``, ``schedules``)
-> ``tvm.compile`` and linking (the target's runtime) -> :class:`~dwc_compiler.runtime.Kernel`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable

from .errors import InvalidSpecError
from .ops import SPEC_TYPES
from .ops.primfunc import prim_func
from .runtime import AlignedEntries, Kernel, runtime_for
from .schedules import aligned_variants, apply_rules
from .targets import TargetInfo, resolve_target
from .tuning.records import lookup
from .tuning.spaces import REPLAY_ERRORS, schedule_from_record

logger = logging.getLogger(__name__)


def build(spec: Any, target: str | TargetInfo = "host", records: str | Path | None = None,
          use_records: bool = True) -> Kernel:
    """Compile `spec` for `target` and return a callable :class:`~dwc_compiler.runtime.Kernel`.

    The best tuning record of the spec's loop nest for the target's records (``host`` uses those
    of the named target it matches) and this TVM version is applied when one beat the hand
    schedule: the user's records (`records`, else ``$DWC_RECORDS`` or the per-user directory),
    then those shipped with dwc. Otherwise the first schedule rule that takes the spec is used
    (the target family's, else the generic one). ``kernel.schedule`` and ``kernel.record`` say which.

    Raises:
        InvalidSpecError: `spec` is not an op spec.
        UnknownTargetError: `target` is not a named target.
        BuildError: TVM failed to compile or link.
        MissingToolError: the target's cross compiler (or qemu, to run it here) is missing.
    """
    if not isinstance(spec, tuple(SPEC_TYPES.values())):
        raise InvalidSpecError(f"spec: expected an op spec ({', '.join(t.__name__ for t in SPEC_TYPES.values())}), "
                               f"got {type(spec).__name__}")
    info = resolve_target(target)
    schedule, schedule_name, record = scheduled(spec, info, records, use_records)
    source, aligned = with_aligned_variants(schedule, spec, info)
    runtime = runtime_for(info)
    loaded = runtime.instantiate(spec, info, runtime.compile(schedule.mod, info))
    if aligned is not None:  # made on first use (Kernel.aligned_function), all of them for export
        loaded = dataclasses.replace(loaded, aligned_entries=aligned, aligned_source=source)
    logger.info("built %s for %s with %s%s", spec.describe(), info.name, schedule_name,
                f" (and {len(aligned.names)} variants for inputs off a vector boundary)" if aligned else "")
    return Kernel(spec, info, schedule_name, runtime, loaded, record)


def with_aligned_variants(schedule: Any, spec: Any, target: TargetInfo) -> tuple[Any, AlignedEntries | None]:
    """The :class:`AlignedSource` of `schedule` (``main``) and the functions for inputs off a
    vector boundary that the target's rule makes for `spec`
    (:func:`~dwc_compiler.schedules.aligned_variants`), and their entries (``(None, None)``
    where there are none)."""
    variants = aligned_variants(spec, target, schedule)
    if not variants.by_offset:
        return None, None
    names = {offset: AlignedEntries.name_for(offset) for offset in variants.by_offset}
    (blocks, _), *_ = variants.by_offset.values()
    source = AlignedSource(schedule.mod["main"],
                           {names[offset]: make for offset, (_, make) in variants.by_offset.items()})
    return source, AlignedEntries(blocks.lanes * spec.itemsize, names, variants.max_threads)


class AlignedSource:
    """``main``'s PrimFunc and those of the variants for inputs off a vector boundary, each
    scheduled when first asked for: ``source[name]`` one of them (what a kernel compiles on
    first use), ``source.module()`` the IRModule of all (what its export compiles)."""

    def __init__(self, main: Any, makers: dict[str, Callable[[], Any]]) -> None:
        self._functions = {"main": main}
        self._makers = makers

    def __getitem__(self, name: str) -> Any:
        if name not in self._functions:
            self._functions[name] = self._makers[name]().mod["main"].with_attr("global_symbol", name)
        return self._functions[name]

    def module(self) -> Any:
        """The IRModule of ``main`` and every variant."""
        import tvm

        return tvm.IRModule({name: self[name] for name in ("main", *self._makers)})


def scheduled(spec: Any, target: TargetInfo, records: str | Path | None = None, use_records: bool = True,
              dwc_passes: bool = True):
    """(schedule, name, record description) of `spec`'s PrimFunc for `target`: the best usable
    tuning record (see :func:`build`), else the first schedule rule's. Model compilers (the Relax
    pass) take ``schedule.mod["main"]`` from here; :func:`build` compiles it.

    `dwc_passes`: the schedule is compiled with dwc's TIR pipeline (as :func:`build` does); a
    schedule for another compiler (``tvm.compile`` of a Relax model) is made without what rests
    on dwc's passes (``schedules/base.py``), and then takes no x86 tuning record of an NCHW spec,
    whose vectorized windows (the x86 space's, or a record's search) only dwc's passes mask."""
    func = prim_func(spec)
    use_records = use_records and (dwc_passes or spec.data_format != "NCHW" or target.family != "x86")
    choice = lookup(spec, target, Path(records) if records is not None else None) if use_records else None
    if choice is not None and choice.use_record:
        try:
            schedule = schedule_from_record(func, choice.record, target.family)
        except REPLAY_ERRORS as exc:  # a record that no longer replays must not break builds
            logger.warning("tuning record %s does not replay (%s); using the hand schedule",
                           choice.record_id, str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
        else:
            return schedule, choice.record_id, {
                "id": choice.record_id, "records_target": choice.records_target, "measured_us": choice.measured_us,
                "hand_us": choice.hand_us, "source": str(choice.source), "choice": choice.describe()}
    schedule, name = apply_rules(func, spec, target, dwc_passes=dwc_passes)
    record = {"id": None, "choice": choice.describe()} if choice is not None and choice.record_id else None
    return schedule, name, record
