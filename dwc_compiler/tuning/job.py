"""Tuning jobs: MetaSchedule's evolutionary search over dwc's own schedules, records kept durably.

For each workload a job:
1. measures the hand schedule (its trace inside dwc's design space) unless a record of it exists;
2. sweeps dwc's own design space (the schedule with its register tiling as perfect-tile
   decisions): this space holds tens of points, and in the union below the generic space's far
   larger population crowds it out;
3. runs the evolutionary search over the union of dwc's space and MetaSchedule's generic space
   (``search.py``) until the trial budget is spent or `patience` trials in a row have not beaten
   the best by more than ``MIN_GAIN``;
4. re-measures the best record against the hand schedule in interleaved rounds (``verdict.py``).

Every measured candidate is appended to the records as it is measured, so a killed job keeps
them and the same job run again resumes. Records are kept under the target's records name
(``host`` tunes into the named target it matches) and the spec's tuning key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..errors import InvalidArgumentError
from ..targets import resolve_target
from .measure import RpcConfig, build_inputs, builder, run_inputs, runner
from .records import RecordStore, default_records_dir, mean_seconds
from .search import Persist, Progress, ProgressCallback, SearchSetup, search
from .spaces import SPACE_OWN, SPACE_UNION, hand_point, module_of
from .verdict import TuneResult, final_verdict

# Trials the sweep of dwc's own space may take (it stops by itself once every point is measured).
OWN_SPACE_TRIALS = 96


@dataclasses.dataclass(frozen=True)
class TuneJob:
    """What a tuning job does for each of its workloads.

    Attributes:
        target: the target (a name or a TargetInfo).
        trials: search trials per workload, those already recorded included.
        records_dir: the records directory (None: ``$DWC_RECORDS`` or the per-user directory).
        rpc: measure on devices behind this RPC tracker (None: locally).
        seed: the search's seed, for repeatable jobs.
        trials_per_round: candidates measured per round (records are appended after each).
        patience: end the union search once this many trials in a row bring no gain (None: never).
    """

    target: Any
    trials: int
    records_dir: Path | None = None
    rpc: RpcConfig | None = None
    seed: int | None = None
    trials_per_round: int = 32
    patience: int | None = None

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise InvalidArgumentError(f"trials: expected a positive number of trials, got {self.trials}")
        if self.patience is not None and self.patience < 1:
            raise InvalidArgumentError(f"patience: expected a positive number of trials, got {self.patience}")
        if self.trials_per_round < 1:
            raise InvalidArgumentError(f"trials-per-round: expected a positive number, got {self.trials_per_round}")


def _searched(entries: list[dict[str, Any]]) -> int:
    return sum(1 for entry in entries if entry.get("origin") == "search")


def tune_workload(name: str, spec: Any, job: TuneJob, progress: ProgressCallback) -> TuneResult:
    """Tune one workload as `job` says; see the module doc."""
    target = resolve_target(job.target)
    search_runner = runner(target, job.rpc, 10, 3, 50)  # refuses targets that cannot be measured here
    store = RecordStore(Path(job.records_dir) if job.records_dir is not None else default_records_dir(),
                        target.records_target or target.name)
    with contextlib.closing(builder(target)) as job_builder:
        _search_workload(name, spec, job, progress, target, store, job_builder, search_runner)
        return final_verdict(name, spec, target, store, job_builder, job.rpc, job.trials)


def _search_workload(name: str, spec: Any, job: TuneJob, progress: ProgressCallback, target: Any,
                     store: RecordStore, job_builder, search_runner) -> None:
    """Steps 1-3 of the module doc: the hand schedule, the sweep of dwc's space, the union search."""
    module = module_of(spec)
    existing = store.measurements(spec.tuning_key)
    if not any(entry.get("origin") == "hand" for entry in existing):
        _measure_hand_schedule(spec, target, store, job_builder, search_runner)
        existing = store.measurements(spec.tuning_key)
    times = [seconds * 1e6 for seconds in map(mean_seconds, existing) if seconds is not None]
    persist = Persist(store, spec, module, target, name, _searched(existing), job.trials,
                      min(times) if times else None, progress)
    if job.trials > persist.measured:
        with tempfile.TemporaryDirectory(prefix="dwc-tune-") as work:
            setup = SearchSetup(module, target, Path(work), job_builder, search_runner, job.seed, job.trials_per_round)
            if not any(entry.get("space") == SPACE_OWN for entry in existing):
                persist.start_phase(SPACE_OWN)
                search(setup, persist, SPACE_OWN, min(OWN_SPACE_TRIALS, job.trials - persist.measured), existing,
                       stale=lambda: False)
                existing = store.measurements(spec.tuning_key)
            if job.trials > persist.measured:
                persist.start_phase(SPACE_UNION)
                search(setup, persist, SPACE_UNION, job.trials - persist.measured, existing,
                       stale=lambda: job.patience is not None and persist.trials_since_gain >= job.patience)
    persist.report(finished=True)


def _measure_hand_schedule(spec: Any, target: Any, store: RecordStore, job_builder, search_runner) -> None:
    """Measure the hand schedule (as a point of dwc's space) as the search measures its
    candidates, and record it with origin "hand"."""
    from tvm.s_tir import meta_schedule as ms

    hand = hand_point(spec, target)
    (run_secs, error), = run_inputs(build_inputs([hand], target, job_builder), search_runner)
    store.append([{"kind": "measurement", "workload_key": spec.tuning_key, "spec": spec.to_dict(),
                   "trace": ms.database.TuningRecord(hand.trace, ms.database.Workload(module_of(spec)), None,
                                                     target.tvm(), None).as_json(),
                   "run_secs": run_secs, "error": error, "origin": "hand"}])


def _ignore(_: Progress) -> None:
    """The default progress callback: reports nothing."""


def tune(workloads: dict[str, Any], job: TuneJob, progress: ProgressCallback = _ignore,
         log: Callable[[str], None] | None = None) -> list[TuneResult]:
    """Tune each of `workloads` (name -> spec) as `job` says.

    Records go to the job's records directory, per target and TVM version, after every round.
    Running the same job again resumes from what is recorded. `progress` hears how each
    workload's search advances; `log` (if given) gets each workload's result line.

    Raises:
        InvalidArgumentError: a bad budget, or a target whose modules cannot be measured here.
        UnknownTargetError: an unknown target name.
    """
    results = []
    for name, spec in workloads.items():
        result = tune_workload(name, spec, job, progress)
        if log is not None:
            log(result.describe())
        results.append(result)
    return results
