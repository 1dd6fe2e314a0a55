"""One evolutionary search of MetaSchedule over a design space, every measured candidate recorded.

The search is seeded with the records already measured (their traces in its database, their
times training its XGBoost cost model, which otherwise starts blind), appends each candidate to
the records as it is measured, reports progress through a callback, and stops after the round
in which its stop rule says the search went stale.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable

from .intrinsics import import_tensor_intrinsics
from .records import RecordStore, mean_seconds
from .spaces import REPLAY_ERRORS, SPACE_OWN, design_space

logger = logging.getLogger(__name__)

# A trial improves on the best when it is this much faster (smaller gains are this machine's noise).
MIN_GAIN = 0.02


@dataclasses.dataclass(frozen=True)
class Progress:
    """Where one workload's tuning stands, as reported to the progress callback.

    Attributes:
        workload: the workload's name.
        measured: search trials recorded so far (a resumed job counts earlier ones).
        total: the trial budget.
        best_us: the best time measured so far, if any.
        finished: True on the last report of the workload.
    """

    workload: str
    measured: int
    total: int
    best_us: float | None
    finished: bool = False


ProgressCallback = Callable[[Progress], None]


class Persist:
    """MeasureCallback body: append each measured candidate to the records, report progress,
    and count the trials since the best time last improved by more than ``MIN_GAIN``."""

    def __init__(self, store: RecordStore, spec: Any, module: Any, target: Any, workload: str, measured: int,
                 total: int, best_us: float | None, progress: ProgressCallback) -> None:
        self.store, self.spec, self.module, self.target = store, spec, module, target
        self.workload, self.measured, self.total, self.progress = workload, measured, total, progress
        self.best_us = best_us
        self.space = SPACE_OWN
        self.trials_since_gain = 0
        self.report()

    def report(self, finished: bool = False) -> None:
        """Tell the progress callback where the search stands."""
        self.progress(Progress(self.workload, self.measured, self.total, self.best_us, finished))

    def start_phase(self, space: str) -> None:
        """Measurements from now on come from `space`; the count since the last gain restarts."""
        self.space, self.trials_since_gain = space, 0

    def note(self, seconds: float | None) -> None:
        """Count one trial that took `seconds` (None: it failed) towards the best and the gain count."""
        self.trials_since_gain += 1
        if seconds is None:
            return
        if self.best_us is None or seconds * 1e6 < self.best_us * (1 - MIN_GAIN):
            self.trials_since_gain = 0
        self.best_us = min(seconds * 1e6, self.best_us or float("inf"))

    def apply(self, measure_candidates, builder_results, runner_results) -> None:
        """Record one round's measurements."""
        from tvm.s_tir import meta_schedule as ms

        workload = ms.database.Workload(self.module)
        entries = []
        for candidate, built, ran in zip(measure_candidates, builder_results, runner_results):
            run_secs = [float(s) for s in ran.run_secs] if ran.run_secs is not None else None
            record = ms.database.TuningRecord(candidate.sch.trace, workload, None, self.target.tvm(),
                                              candidate.args_info)
            entry = {"kind": "measurement", "workload_key": self.spec.tuning_key, "spec": self.spec.to_dict(),
                     "trace": record.as_json(), "run_secs": run_secs, "origin": "search", "space": self.space,
                     "error": (built.error_msg or ran.error_msg or None)}
            entries.append(entry)
            self.note(mean_seconds(entry))
        self.store.append(entries)
        self.measured += len(entries)
        self.report()


def _measure_callback(persist: Persist):
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    @derived_object
    class PersistAndReport(ms.measure_callback.PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            persist.apply(measure_candidates, builder_results, runner_results)

    return PersistAndReport()


def _scheduler_stopping_when(stale: Callable[[], bool]):
    """MetaSchedule's task scheduler for one task that ends the search once `stale()` is true
    (checked after each round's results are in)."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    @derived_object
    class StopWhenStale(ms.task_scheduler.PyTaskScheduler):
        def next_task_id(self) -> int:
            task = self._outer().tasks_[0]
            if task.is_terminated:
                return -1
            if task.runner_futures is not None:
                self.join_running_task(0)  # the measure callbacks run here
            return -1 if stale() else 0

    return StopWhenStale()


def _replayed(module, records: list[dict[str, Any]]) -> list[tuple[Any, float]]:
    """(TuningRecord on `module`, mean seconds) of every successful record that replays here
    (read once per search, for the database and the cost model alike)."""
    from tvm.s_tir import meta_schedule as ms

    workload = ms.database.Workload(module)
    replayed = []
    for entry in records:
        seconds = mean_seconds(entry)
        if seconds is None:
            continue
        try:
            replayed.append((ms.database.TuningRecord.from_json(entry["trace"], workload), seconds))
        except REPLAY_ERRORS as exc:  # a record this TVM cannot replay is skipped, as a corrupt line
            logger.warning("skipped a record that does not replay: %s", str(exc).splitlines()[0][:200])
    return replayed


def _seed_database(module, replayed: list[tuple[Any, float]], target: Any):
    from tvm.s_tir import meta_schedule as ms

    database = ms.database.MemoryDatabase()
    workload = database.commit_workload(module)
    for record, seconds in replayed:
        database.commit_tuning_record(ms.database.TuningRecord(
            record.trace, workload, [seconds], target.tvm(), record.args_info))
    return database


def _trained_cost_model(module, replayed: list[tuple[Any, float]], target: Any):
    """MetaSchedule's XGBoost cost model, trained on the measured records (its own training only
    sees what one search measures: without this, a resumed or second search starts blind)."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    model = ms.cost_model.XGBModel()
    candidates, results = [], []
    for record, seconds in replayed:
        schedule = tvm.s_tir.Schedule(module)
        try:
            record.trace.apply_to_schedule(schedule, remove_postproc=False)
        except REPLAY_ERRORS:  # a trace that no longer applies is left out of training
            continue
        candidates.append(ms.MeasureCandidate(schedule, ms.arg_info.ArgInfo.from_prim_func(schedule.mod["main"])))
        results.append(ms.runner.RunnerResult([seconds], None))
    if candidates:
        context = ms.TuneContext(mod=module, target=target.tvm(), num_threads=1)
        model.update(context, candidates, results)
    return model


@contextlib.contextmanager
def _quiet_meta_schedule():
    """Keep MetaSchedule's per-round INFO/DEBUG log (statistics tables, XGBoost iterations) off
    the console while it searches: progress goes through the callback; warnings still show."""
    ms_logger = logging.getLogger("tvm.s_tir.meta_schedule")

    def drop_level_advice(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Logging level set to")

    level = ms_logger.level
    ms_logger.setLevel(logging.WARNING)
    ms_logger.addFilter(drop_level_advice)
    try:
        yield
    finally:
        ms_logger.removeFilter(drop_level_advice)
        ms_logger.setLevel(level)


@dataclasses.dataclass(frozen=True)
class SearchSetup:
    """What every search of one workload shares: where it works, how it builds and measures."""

    module: Any
    target: Any
    work_dir: Path
    builder: Any
    runner: Any
    seed: int | None
    trials_per_round: int


def search(setup: SearchSetup, persist: Persist, space: str, budget: int, records: list[dict[str, Any]],
           stale: Callable[[], bool]) -> None:
    """One evolutionary search over `space` of at most `budget` trials, seeded with `records`."""
    from tvm.s_tir import meta_schedule as ms

    import_tensor_intrinsics()  # before its TuneContexts import them the slow way
    target = setup.target
    replayed = _replayed(setup.module, records)
    with _quiet_meta_schedule():
        ms.tune_tir(setup.module, target.tvm(), str(setup.work_dir / space), max_trials_global=budget,
                    num_trials_per_iter=min(setup.trials_per_round, budget),
                    space=design_space(persist.spec, target, space),
                    database=_seed_database(setup.module, replayed, target),
                    builder=setup.builder, runner=setup.runner,
                    cost_model=_trained_cost_model(setup.module, replayed, target),
                    measure_callbacks=ms.measure_callback.MeasureCallback.create("default") + [_measure_callback(persist)],
                    task_scheduler=_scheduler_stopping_when(stale),
                    num_tuning_cores=max(target.tvm_target.get("num-cores", 1), 1) if target.family != "cuda" else 1,
                    seed=setup.seed)
