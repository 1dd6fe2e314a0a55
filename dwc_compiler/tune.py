"""Tuning jobs: MetaSchedule's evolutionary search over dwc's own schedules, records kept durably.

For each workload a job:
1. measures the hand schedule (its trace inside dwc's design space) unless a record of it exists;
2. sweeps dwc's own design space (the schedule with its register tiling as perfect-tile
   decisions) with MetaSchedule's evolutionary search: this space holds tens of points, and in
   the union below the generic space's far larger population crowds it out;
3. runs the evolutionary search over the union of dwc's space and MetaSchedule's generic space,
   its XGBoost cost model first trained on every record already measured, seeded with the best
   records, until the trial budget is spent or `patience` trials in a row have not beaten the best
   by more than ``MIN_GAIN``;
4. re-measures the best record against the hand schedule in interleaved rounds and writes the
   verdict that builds follow: the record when it is more than ``MIN_GAIN`` faster and not the
   hand schedule itself (the sweep measures the hand tiling too), else the hand schedule.

Every measured candidate is appended to the records as it is measured, so a killed job keeps
them and the same job run again resumes. Measurement runs locally or on devices registered with
TVM's RPC tracker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any, Callable

from .errors import DwcError, InvalidArgumentError
from .records import RecordStore, choose, mean_seconds, record_id
from .spec import DepthwiseSpec
from .targets import TargetInfo

logger = logging.getLogger(__name__)

BUILD_TIMEOUT_S = 120
FINAL_ROUNDS = 15
# A trial improves on the best when it is this much faster (smaller gains are this machine's noise).
MIN_GAIN = 0.02
# Trials the sweep of dwc's own space may take (it stops by itself once every point is measured).
OWN_SPACE_TRIALS = 96
SPACE_OWN, SPACE_UNION = "dwc", "dwc+generic"


@dataclasses.dataclass(frozen=True)
class RpcConfig:
    """Where to measure remotely: a TVM RPC tracker and the key its devices registered with."""

    tracker_host: str
    tracker_port: int
    key: str
    session_timeout_s: int = 120

    @classmethod
    def parse(cls, tracker: str, key: str) -> "RpcConfig":
        """From ``HOST:PORT`` and a key; errors name the option."""
        host, _, port = tracker.rpartition(":")
        if not host or not port.isdigit():
            raise InvalidArgumentError(f"rpc-tracker: expected HOST:PORT such as 127.0.0.1:9190, got {tracker!r}")
        if not key:
            raise InvalidArgumentError("rpc-key: give the key the devices registered with (e.g. --rpc-key x86)")
        return cls(host, int(port), key)


@dataclasses.dataclass(frozen=True)
class TuneResult:
    """The outcome of tuning one workload."""

    name: str
    workload_key: str
    trials_measured: int
    trials_total: int
    record_id: str | None
    tuned_us: float | None
    hand_us: float | None
    uses_record: bool
    same_as_hand: bool = False

    def describe(self) -> str:
        """One line for people."""
        if self.tuned_us is None or self.hand_us is None:
            return f"{self.name}: no successful trial; builds use the hand schedule"
        verdict = f"builds use {self.record_id}" if self.uses_record else "builds keep the hand schedule"
        if self.same_as_hand:
            verdict = "the best trial was the hand schedule itself; builds keep it"
        return (f"{self.name}: tuned {self.tuned_us:.1f} us vs hand {self.hand_us:.1f} us "
                f"({self.hand_us / self.tuned_us:.2f}x) after {self.trials_measured} of at most {self.trials_total} "
                f"trials; {verdict}")


def _build_function(mod, target, _params):
    """MetaSchedule builder: ``tvm.compile`` directly.

    MetaSchedule's default build imports ``tvm.s_tir.tensor_intrin``, which took 25 s here,
    in every builder process: long enough to time every build out.
    """
    import tvm

    with tvm.transform.PassContext(opt_level=3):
        return tvm.compile(mod, target=target).mod  # the runtime module, as the exporter expects


def _keep_artifacts(*_session_and_paths: Any) -> None:
    """Runner clean-up that keeps the built module, so the final rounds re-run the same builds
    (local runners call it with no arguments, RPC runners with the session and remote path)."""


def _export_function(cross_compiler: str | None) -> Callable[[Any], str] | None:
    if cross_compiler is None:
        return None

    def export(module) -> str:
        import os
        import tempfile as temporary

        import tvm.support.cc

        path = os.path.join(temporary.mkdtemp(), "tvm_tmp_mod.so")
        module.export_library(path, fcompile=tvm.support.cc.cross_compiler(cross_compiler))
        return path

    return export


def _runner(target: TargetInfo, rpc: RpcConfig | None, number: int, repeat: int, min_repeat_ms: int,
            keep_artifacts: bool = False):
    from tvm.s_tir import meta_schedule as ms

    evaluator = ms.runner.EvaluatorConfig(number=number, repeat=repeat, min_repeat_ms=min_repeat_ms)
    cleanup = _keep_artifacts if keep_artifacts else None
    if rpc is not None:
        config = ms.runner.RPCConfig(tracker_host=rpc.tracker_host, tracker_port=rpc.tracker_port,
                                     tracker_key=rpc.key, session_timeout_sec=rpc.session_timeout_s)
        return ms.runner.RPCRunner(rpc_config=config, evaluator_config=evaluator, f_cleanup=cleanup)
    if not target.runs_natively and target.family != "cuda":
        raise InvalidArgumentError(
            f"target: {target.name} modules do not run on this machine; measure them on the device with "
            "--rpc-tracker HOST:PORT --rpc-key KEY (python -m tvm.exec.rpc_server on the device)")
    return ms.runner.LocalRunner(evaluator_config=evaluator, f_cleanup=cleanup)


def _builder(target: TargetInfo):
    from tvm.s_tir import meta_schedule as ms

    return ms.builder.LocalBuilder(f_build=_build_function, f_export=_export_function(target.cross_compiler),
                                   timeout_sec=BUILD_TIMEOUT_S)


def _module(spec: DepthwiseSpec):
    import tvm

    from .compute import depthwise_prim_func

    return tvm.IRModule({"main": depthwise_prim_func(spec)})


def _own_space(spec: DepthwiseSpec, target: TargetInfo, **generator_options):
    """dwc's schedule for `target` with its tiling as sampled decisions, as a space generator."""
    from tvm.s_tir import meta_schedule as ms

    from .schedules import family_module

    rule = family_module(target.family)

    def space(sch):
        return rule.design_space(sch, spec, target)

    return ms.space_generator.ScheduleFn(space, **generator_options)


def _design_space(spec: DepthwiseSpec, target: TargetInfo, space: str):
    """The space generator named `space`: dwc's own space, or its union with the generic one."""
    from tvm.s_tir import meta_schedule as ms

    if space == SPACE_OWN:
        return _own_space(spec, target)
    ours = _own_space(spec, target, sch_rules=[], postprocs=[], mutator_probs={})
    return ms.space_generator.SpaceGeneratorUnion([ours, ms.space_generator.PostOrderApply()])


def hand_schedule_in_space(spec: DepthwiseSpec, target: TargetInfo):
    """The hand schedule as a point of dwc's design space (its trace replays in the search)."""
    import tvm

    from .schedules import family_module

    return family_module(target.family).design_space(tvm.s_tir.Schedule(_module(spec)), spec, target, use_hand=True)


def _build_inputs(schedules: list[Any], target: TargetInfo, builder) -> list[tuple[Any, str | None]]:
    """Build `schedules`; returns (runner input or None, build error) per schedule."""
    from tvm.s_tir import meta_schedule as ms

    built = builder.build([ms.builder.BuilderInput(sch.mod, target.tvm()) for sch in schedules])
    device = "cuda" if target.family == "cuda" else "cpu"
    return [(None, build.error_msg) if build.error_msg else
            (ms.runner.RunnerInput(build.artifact_path, device, ms.arg_info.ArgInfo.from_prim_func(sch.mod["main"])), None)
            for sch, build in zip(schedules, built)]


def _run_inputs(inputs: list[tuple[Any, str | None]], runner) -> list[tuple[list[float] | None, str | None]]:
    """Run the built inputs once each; returns (run_secs, error) per input."""
    futures = iter(runner.run([item for item, _ in inputs if item is not None]))
    results = []
    for item, error in inputs:
        if item is None:
            results.append((None, error))
            continue
        outcome = futures.__next__().result()
        results.append(([float(s) for s in outcome.run_secs] if outcome.run_secs else None, outcome.error_msg))
    return results


class _Persist:
    """MeasureCallback body: append each measured candidate to the records, update the progress
    bar, and count the trials since the best time last improved by more than ``MIN_GAIN``."""

    def __init__(self, store: RecordStore, spec: DepthwiseSpec, module, target: TargetInfo, progress,
                 best_us: float | None) -> None:
        self.store, self.spec, self.module, self.target, self.progress = store, spec, module, target, progress
        self.best_us = best_us
        self.space = SPACE_OWN
        self.trials_since_gain = 0
        if best_us is not None:
            progress.set_postfix_str(f"best {best_us:.1f} us")

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
        from tvm.s_tir import meta_schedule as ms

        workload = ms.database.Workload(self.module)
        entries = []
        for candidate, built, ran in zip(measure_candidates, builder_results, runner_results):
            run_secs = [float(s) for s in ran.run_secs] if ran.run_secs is not None else None
            record = ms.database.TuningRecord(candidate.sch.trace, workload, None, self.target.tvm(),
                                              candidate.args_info)
            entry = {"kind": "measurement", "workload_key": self.spec.workload_key, "spec": self.spec.to_dict(),
                     "trace": record.as_json(), "run_secs": run_secs, "origin": "search", "space": self.space,
                     "error": (built.error_msg or ran.error_msg or None)}
            entries.append(entry)
            self.note(mean_seconds(entry))
        self.store.append(entries)
        self.progress.update(len(entries))
        if self.best_us is not None:
            self.progress.set_postfix_str(f"best {self.best_us:.1f} us")


def _measure_callback(persist: _Persist):
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


def _trained_cost_model(module, records: list[dict[str, Any]], spec: DepthwiseSpec, target: TargetInfo):
    """MetaSchedule's XGBoost cost model, trained on the measured `records` (its own training
    only sees what one search measures: without this, a resumed or second search starts blind)."""
    from tvm.s_tir import meta_schedule as ms

    model = ms.cost_model.XGBModel()
    candidates, results = [], []
    for entry in records:
        seconds = mean_seconds(entry)
        if seconds is None:
            continue
        try:
            schedule = schedule_from_record(spec, entry)
        except Exception:  # noqa: BLE001 - a record this TVM cannot replay is skipped, as when seeding
            continue
        candidates.append(ms.MeasureCandidate(schedule, ms.arg_info.ArgInfo.from_prim_func(schedule.mod["main"])))
        results.append(ms.runner.RunnerResult([seconds], None))
    if candidates:
        context = ms.TuneContext(mod=module, target=target.tvm(), num_threads=1)
        model.update(context, candidates, results)
    return model


def _seed_database(module, records: list[dict[str, Any]], target: TargetInfo):
    from tvm.s_tir import meta_schedule as ms

    database = ms.database.MemoryDatabase()
    workload = database.commit_workload(module)
    for entry in records:
        seconds = mean_seconds(entry)
        if seconds is None:
            continue
        try:
            record = ms.database.TuningRecord.from_json(entry["trace"], workload)
        except Exception as exc:  # a record this TVM cannot replay: skip it, as a corrupt line
            logger.warning("skipped a record that does not replay: %s", str(exc).splitlines()[0][:200])
            continue
        database.commit_tuning_record(ms.database.TuningRecord(
            record.trace, workload, [seconds], target.tvm(), record.args_info))
    return database


def schedule_from_record(spec: DepthwiseSpec, entry: dict[str, Any]):
    """The schedule a measurement record describes, replayed on `spec`'s PrimFunc."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    module = _module(spec)
    record = ms.database.TuningRecord.from_json(entry["trace"], ms.database.Workload(module))
    schedule = tvm.s_tir.Schedule(module)
    record.trace.apply_to_schedule(schedule, remove_postproc=False)
    return schedule


def tune_workload(name: str, spec: DepthwiseSpec, target: TargetInfo, trials: int, records_dir: Path,
                  rpc: RpcConfig | None = None, seed: int | None = None, show_progress: bool = True,
                  num_trials_per_iter: int = 32, patience: int | None = None) -> TuneResult:
    """Tune one workload for `target`: at most `trials` search trials recorded in all, the union
    search ending early once `patience` trials in a row bring no gain; see the module doc."""
    import tqdm

    if trials < 1:
        raise InvalidArgumentError(f"trials: expected a positive number of trials, got {trials}")
    if patience is not None and patience < 1:
        raise InvalidArgumentError(f"patience: expected a positive number of trials, got {patience}")
    search_runner = _runner(target, rpc, 10, 3, 50)  # refuses targets that cannot be measured here
    store = RecordStore(records_dir, target.name)
    module = _module(spec)
    builder = _builder(target)
    existing = store.measurements(spec.workload_key)
    if not any(entry.get("origin") == "hand" for entry in existing):
        _measure_hand_schedule(spec, target, store, module, builder, rpc)
        existing = store.measurements(spec.workload_key)
    searched = sum(1 for entry in existing if entry.get("origin") == "search")
    if trials - searched > 0:
        times = [seconds * 1e6 for seconds in map(mean_seconds, existing) if seconds is not None]
        with tempfile.TemporaryDirectory(prefix="dwc-tune-") as work, \
                tqdm.tqdm(total=trials, initial=searched, desc=name, unit="trial", disable=not show_progress) as bar:
            persist = _Persist(store, spec, module, target, bar, min(times) if times else None)
            search = functools.partial(_search, module, target, Path(work), builder, search_runner, persist, seed,
                                       num_trials_per_iter)
            if not any(entry.get("space") == SPACE_OWN for entry in existing):
                persist.start_phase(SPACE_OWN)
                search(SPACE_OWN, min(OWN_SPACE_TRIALS, trials - searched), existing, stale=lambda: False)
                existing = store.measurements(spec.workload_key)
                searched = sum(1 for entry in existing if entry.get("origin") == "search")
            if trials - searched > 0:
                persist.start_phase(SPACE_UNION)
                search(SPACE_UNION, trials - searched, existing,
                       stale=lambda: patience is not None and persist.trials_since_gain >= patience)
    return _final_verdict(name, spec, target, store, builder, rpc, trials)


def _measure_hand_schedule(spec: DepthwiseSpec, target: TargetInfo, store: RecordStore, module, builder,
                           rpc: RpcConfig | None) -> None:
    """Measure the hand schedule (as a point of dwc's space) and record it with origin "hand"."""
    from tvm.s_tir import meta_schedule as ms

    hand = hand_schedule_in_space(spec, target)
    (run_secs, error), = _run_inputs(_build_inputs([hand], target, builder), _runner(target, rpc, 10, 5, 50))
    store.append([{"kind": "measurement", "workload_key": spec.workload_key, "spec": spec.to_dict(),
                   "trace": ms.database.TuningRecord(hand.trace, ms.database.Workload(module), None,
                                                     target.tvm(), None).as_json(),
                   "run_secs": run_secs, "error": error, "origin": "hand"}])


@contextlib.contextmanager
def _quiet_meta_schedule():
    """Keep MetaSchedule's per-round INFO/DEBUG log (statistics tables, XGBoost iterations) off
    the console while it searches: the progress bar says what matters; warnings still show."""
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


def _search(module, target: TargetInfo, work: Path, builder, runner, persist: _Persist, seed: int | None,
            num_trials_per_iter: int, space: str, budget: int, records: list[dict[str, Any]],
            stale: Callable[[], bool]) -> None:
    """One evolutionary search over `space` of at most `budget` trials, seeded with `records`."""
    from tvm.s_tir import meta_schedule as ms

    spec = persist.spec
    with _quiet_meta_schedule():
        ms.tune_tir(module, target.tvm(), str(work / space), max_trials_global=budget,
                    num_trials_per_iter=min(num_trials_per_iter, budget),
                    space=_design_space(spec, target, space), database=_seed_database(module, records, target),
                    builder=builder, runner=runner, cost_model=_trained_cost_model(module, records, spec, target),
                    measure_callbacks=ms.measure_callback.MeasureCallback.create("default") + [_measure_callback(persist)],
                    task_scheduler=_scheduler_stopping_when(stale),
                    num_tuning_cores=max(target.tvm_target.get("num-cores", 1), 1) if target.family != "cuda" else 1,
                    seed=seed)


def _final_verdict(name: str, spec: DepthwiseSpec, target: TargetInfo, store: RecordStore, builder,
                   rpc: RpcConfig | None, trials: int) -> TuneResult:
    """Re-measure the best search record against the hand schedule, interleaved, and record the verdict."""
    measurements = store.measurements(spec.workload_key)
    searched = [entry for entry in measurements if entry.get("origin") == "search"]
    hand_entries = [entry for entry in measurements if entry.get("origin") == "hand"]
    scored = [(mean_seconds(entry), entry) for entry in searched]
    scored = [(seconds, entry) for seconds, entry in scored if seconds is not None]
    if not scored or not hand_entries:
        return TuneResult(name, spec.workload_key, len(searched), trials, None, None, None, False)
    best = min(scored, key=lambda item: item[0])[1]
    identifier = record_id(best["trace"])
    import tvm_ffi

    schedules = [schedule_from_record(spec, best), schedule_from_record(spec, hand_entries[0])]
    # The sweep measures the hand tiling again (under another trace); if that was the best
    # trial, the record is the hand schedule itself.
    same_as_hand = bool(tvm_ffi.structural_equal(schedules[0].mod, schedules[1].mod))
    runner = _runner(target, rpc, 20, 5, 50, keep_artifacts=True)
    inputs = _build_inputs(schedules, target, builder)
    samples: list[list[float]] = [[], []]
    try:
        for _ in range(FINAL_ROUNDS):
            for index, (run_secs, _error) in enumerate(_run_inputs(inputs, runner)):
                if run_secs:
                    samples[index] += run_secs
    finally:
        for item, _error in inputs:
            if item is not None:
                shutil.rmtree(Path(item.artifact_path).parent, ignore_errors=True)
    if not samples[0] or not samples[1]:
        raise DwcError(f"{name}: the final re-measurement failed; records kept in {store.path}")
    tuned_us, hand_us = (statistics.median(values) * 1e6 for values in samples)
    use = "record" if not same_as_hand and tuned_us < hand_us * (1 - MIN_GAIN) else "hand"
    store.append([{"kind": "verdict", "workload_key": spec.workload_key, "record_id": identifier,
                   "tuned_us": tuned_us, "hand_us": hand_us, "use": use, "trials": len(searched),
                   "same_as_hand": same_as_hand,
                   "method": f"{FINAL_ROUNDS} interleaved rounds of 5 repeats x 20 runs, medians; a record is "
                             f"used when {MIN_GAIN:.0%} faster"}])
    return TuneResult(name, spec.workload_key, len(searched), trials, identifier, tuned_us, hand_us, use == "record",
                      same_as_hand)


def tune(workloads: dict[str, DepthwiseSpec], target: TargetInfo | str, trials: int,
         records_dir: Path | None = None, rpc: RpcConfig | None = None, seed: int | None = None,
         show_progress: bool = True, log: Callable[[str], None] = logger.info,
         trials_per_round: int = 32, patience: int | None = None) -> list[TuneResult]:
    """Tune each of `workloads` (name -> spec) for `target` with a budget of `trials` each,
    ending a workload's search early once `patience` trials in a row bring no gain (None: never).

    Records go to `records_dir` (default: ``$DWC_RECORDS`` or the per-user directory), per target
    and TVM version, after every round of `trials_per_round` measurements. Running the same job
    again resumes from what is recorded.

    Raises:
        InvalidArgumentError: a bad budget, or a target whose modules cannot be measured here.
        UnknownTargetError: an unknown target name.
    """
    from .build import as_target
    from .records import default_records_dir

    info = as_target(target)
    directory = Path(records_dir) if records_dir is not None else default_records_dir()
    results = []
    for name, spec in workloads.items():
        result = tune_workload(name, spec, info, trials, directory, rpc, seed, show_progress, trials_per_round, patience)
        log(result.describe())
        results.append(result)
    return results


def usable_record(spec: DepthwiseSpec, target: TargetInfo, records_dir: Path | None):
    """The record choice for a build (see :func:`dwc_compiler.records.choose`): user's records first, then shipped."""
    from .records import default_records_dir

    root = Path(records_dir) if records_dir is not None else default_records_dir()
    return choose(spec.workload_key, target.name, [root] if root.is_dir() else [], target.records_dir)
