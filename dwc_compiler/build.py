"""The build pipeline: spec -> PrimFunc -> schedule -> tvm.compile -> Kernel."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from .errors import InvalidSpecError
from .spec import DepthwiseSpec
from .targets import TargetInfo, resolve_target

logger = logging.getLogger(__name__)

_emulated_modules_dir: Path | None = None


def as_target(target: str | TargetInfo) -> TargetInfo:
    """`target` resolved: a name (``"host"``, ``"x86-avx512"``, ...) or a TargetInfo as it is."""
    return target if isinstance(target, TargetInfo) else resolve_target(target)


def build(spec: DepthwiseSpec, target: str | TargetInfo = "host", records: str | Path | None = None,
          use_records: bool = True):
    """Compile `spec` for `target` and return a callable :class:`~dwc_compiler.kernel.Kernel`.

    The best tuning record for (workload, target, TVM version) is applied when one beat the
    hand schedule (records in `records`, else ``$DWC_RECORDS`` or the per-user directory, then
    those shipped with dwc); otherwise the target family's hand schedule is used (falling back
    to the generic schedule where it cannot handle the spec). ``kernel.schedule`` and
    ``kernel.record`` say which.

    Raises:
        InvalidSpecError: `spec` is not a DepthwiseSpec.
        UnknownTargetError: `target` is not a named target.
        BuildError: TVM failed to compile or link.
        MissingToolError: the target's cross compiler (or qemu, to run it here) is missing.
    """
    from .kernel import Kernel
    from .toolchain import compile_module

    if not isinstance(spec, DepthwiseSpec):
        raise InvalidSpecError(f"spec: expected a DepthwiseSpec, got {type(spec).__name__}")
    info = as_target(target)
    schedule, schedule_name, record = _choose_schedule(spec, info, records, use_records)
    if info.family == "cuda":
        from .cuda_runtime import building_for, kernel_from_executable

        with building_for(info):
            executable = compile_module(schedule.mod, info)
        logger.info("built %s for %s with %s", spec.describe(), info.name, schedule_name)
        kernel = kernel_from_executable(spec, info, schedule_name, executable)
    else:
        executable = compile_module(schedule.mod, info)
        logger.info("built %s for %s with %s", spec.describe(), info.name, schedule_name)
        if info.runs_natively:
            kernel = Kernel(spec, info, schedule_name, module=executable.jit(), executable=executable)
        else:
            kernel = _emulated_kernel(spec, info, schedule_name, executable)
    kernel.record = record
    return kernel


def _choose_schedule(spec: DepthwiseSpec, info: TargetInfo, records, use_records: bool):
    """(schedule, name, record description): the best usable tuning record, else the hand schedule."""
    from .schedules import hand_schedule

    choice = None
    if use_records:
        from .tune import schedule_from_record, usable_record

        choice = usable_record(spec, info, Path(records) if records is not None else None)
        if choice.use_record:
            try:
                schedule = schedule_from_record(spec, choice.record)
            except Exception as exc:  # a record that no longer replays must not break builds
                logger.warning("tuning record %s does not replay (%s); using the hand schedule",
                               choice.record_id, str(exc).splitlines()[0][:200])
            else:
                return schedule, choice.record_id, {"id": choice.record_id, "measured_us": choice.measured_us,
                                                    "hand_us": choice.hand_us, "source": str(choice.source),
                                                    "choice": choice.describe()}
    schedule, name = hand_schedule(spec, info)
    return schedule, name, {"id": None, "choice": choice.describe()} if choice and choice.record_id else None


def _emulated_kernel(spec: DepthwiseSpec, info: TargetInfo, schedule_name: str, executable):
    """A kernel for a foreign CPU: linked with the cross compiler and run under qemu-user."""
    from .emulation import emulated_runner
    from .kernel import Kernel
    from .toolchain import export_library

    global _emulated_modules_dir
    if _emulated_modules_dir is None:
        _emulated_modules_dir = Path(tempfile.mkdtemp(prefix="dwc-emulated-"))
    library = _emulated_modules_dir / f"{spec.workload_key}-{info.name}.so"
    export_library(executable, library, info)
    return Kernel(spec, info, schedule_name, executable=executable, library_path=library,
                  runner=emulated_runner(library, spec, info))
