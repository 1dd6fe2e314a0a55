"""The end of a tuning job: the best record re-measured against the hand schedule, interleaved.

Builds follow the verdict: the record when it is more than ``MIN_GAIN`` faster and not the hand
schedule itself (the sweep of dwc's space measures the hand tiling too, under another trace).
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
from pathlib import Path
from typing import Any

from ..errors import DwcError
from .measure import RpcConfig, build_inputs, run_inputs, runner
from .records import RecordStore, mean_seconds, record_id
from .search import MIN_GAIN
from .spaces import hand_point, module_of, schedule_from_record

FINAL_ROUNDS = 15


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
        # A job asking for no more trials than are recorded only re-runs the verdict.
        trials = (f"{self.trials_measured} of at most {self.trials_total}"
                  if self.trials_measured < self.trials_total else f"{self.trials_measured} recorded")
        return (f"{self.name}: tuned {self.tuned_us:.1f} us vs hand {self.hand_us:.1f} us "
                f"({self.hand_us / self.tuned_us:.2f}x) after {trials} trials; {verdict}")


def final_verdict(name: str, spec: Any, target: Any, store: RecordStore, builder, rpc: RpcConfig | None,
                  trials: int) -> TuneResult:
    """Re-measure the best search record against the hand schedule, interleaved, and record the verdict."""
    import tvm_ffi

    measurements = store.measurements(spec.tuning_key)
    searched = [entry for entry in measurements if entry.get("origin") == "search"]
    hand_entries = [entry for entry in measurements if entry.get("origin") == "hand"]
    scored = [(seconds, entry) for seconds, entry in ((mean_seconds(entry), entry) for entry in searched)
              if seconds is not None]
    if not scored or not hand_entries:
        return TuneResult(name, spec.tuning_key, len(searched), trials, None, None, None, False)
    best = min(scored, key=lambda item: item[0])[1]
    identifier = record_id(best["trace"])
    module = module_of(spec)
    # The hand schedule as dwc builds it now, not the trace recorded when the job first measured
    # it: a trace replays the loop structure of its day, and a dwc whose hand schedule changed
    # would judge its records against the old one.
    schedules = [schedule_from_record(module, best, target.family), hand_point(spec, target)]
    same_as_hand = bool(tvm_ffi.structural_equal(schedules[0].mod, schedules[1].mod))
    inputs = build_inputs(schedules, target, builder)
    final_runner = runner(target, rpc, 20, 5, 50, keep_artifacts=True)
    samples: list[list[float]] = [[], []]
    try:
        for _ in range(FINAL_ROUNDS):
            for index, (run_secs, _error) in enumerate(run_inputs(inputs, final_runner)):
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
    store.append([{"kind": "verdict", "workload_key": spec.tuning_key, "record_id": identifier,
                   "tuned_us": tuned_us, "hand_us": hand_us, "use": use, "trials": len(searched),
                   "same_as_hand": same_as_hand,
                   "method": f"{FINAL_ROUNDS} interleaved rounds of 5 repeats x 20 runs, medians; a record is "
                             f"used when {MIN_GAIN:.0%} faster"}])
    return TuneResult(name, spec.tuning_key, len(searched), trials, identifier, tuned_us, hand_us, use == "record",
                      same_as_hand)
