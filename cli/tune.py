"""``dwc tune``: tune workloads with MetaSchedule; records make later builds use the best schedule."""

from __future__ import annotations

import functools
from pathlib import Path

import click
import tqdm

from ..errors import InvalidSpecError
from ..tuning import Progress, RpcConfig, TuneJob, tune
from ..workloads import MODELS, model_workloads, workload
from .options import spec_options


class ProgressBars:
    """Draws one tqdm bar per workload from the tuning job's progress reports."""

    def __init__(self) -> None:
        self._bar: tqdm.tqdm | None = None

    def __call__(self, progress: Progress) -> None:
        if self._bar is None:
            self._bar = tqdm.tqdm(total=progress.total, initial=progress.measured, desc=progress.workload,
                                  unit="trial")
        self._bar.n = progress.measured
        if progress.best_us is not None:
            self._bar.set_postfix_str(f"best {progress.best_us:.1f} us", refresh=False)
        self._bar.refresh()
        if progress.finished:
            self._bar.close()
            self._bar = None


@click.command("tune")
@click.option("--target", "target_name", default="host", show_default=True, metavar="NAME",
              help="A named target (see `dwc targets`), e.g. x86-avx512.")
@click.option("--model", metavar="NAME", help=f"Tune every depthwise layer of a model: {', '.join(MODELS)}.")
@functools.partial(spec_options, required=False)
@click.option("--trials", type=click.IntRange(min=1), default=256, show_default=True,
              help="Search trials per workload (a resumed job counts those already recorded), e.g. 512.")
@click.option("--patience", type=click.IntRange(min=1), metavar="N",
              help="End a workload's search once N trials in a row have not beaten its best by 2%, e.g. 64 "
                   "(default: spend the whole --trials budget).")
@click.option("--trials-per-round", type=click.IntRange(min=1), default=32, show_default=True,
              help="Candidates measured per search round (records are appended after each), e.g. 16.")
@click.option("--records", "records_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Records directory (default: $DWC_RECORDS, else ~/.local/share/dwc/records).")
@click.option("--rpc-tracker", metavar="HOST:PORT",
              help="Measure on devices registered with this TVM RPC tracker, e.g. 127.0.0.1:9190.")
@click.option("--rpc-key", metavar="KEY", help="The key those devices registered with, e.g. rasp4.")
@click.option("--seed", type=int, help="Seed of the search, for repeatable jobs.")
def command(target_name: str, model: str | None, spec, trials: int, patience: int | None, trials_per_round: int,
            records_dir: Path | None, rpc_tracker: str | None, rpc_key: str | None, seed: int | None) -> None:
    """Tune depthwise layers for a target; every measured trial is recorded as it is measured.

    The search (MetaSchedule, evolutionary, XGBoost cost model) runs over dwc's own schedule
    with its tiling as decisions, united with MetaSchedule's generic space, and starts from the
    hand schedule, so tuning never ends worse. Each workload ends with the best record
    re-measured against the hand schedule; later builds use whichever was faster. A killed job
    keeps what it measured; running it again resumes. With no more --trials than are recorded,
    only the verdict runs again (after a dwc upgrade changed the hand schedules, say).
    `--target host` tunes into the records of the named target this machine matches (see
    `dwc targets`).

    \b
    Examples:
      dwc tune --target x86-avx512 --workload mbv2-56x56x144-s1 --trials 256
      dwc tune --target x86-avx2 --model mobilenet_v2 --trials 512 --patience 64 --records ./records
      dwc tune --target host --input-shape 1,28,28,192 --filter-shape 3,3,192,1 --trials 64
      dwc tune --target aarch64-neon --workload mbv2-7x7x960-s1 --rpc-tracker 10.0.0.5:9190 --rpc-key rasp4
    """
    if model and spec is not None:
        raise InvalidSpecError("model: give --model or one workload (--workload / shape options), not both")
    if model:
        workloads = {name: workload(name) for name in model_workloads(model)}
    elif spec is not None:
        workloads = {spec.workload_key: spec}
    else:
        raise InvalidSpecError("workload: give --model NAME, --workload NAME, or --input-shape and --filter-shape")
    rpc = None
    if rpc_tracker or rpc_key:
        rpc = RpcConfig.parse(rpc_tracker or "", rpc_key or "")
    job = TuneJob(target_name, trials, records_dir, rpc, seed, trials_per_round, patience)
    results = tune(workloads, job, progress=ProgressBars(), log=click.echo)
    improved = sum(1 for result in results if result.uses_record)
    click.echo(f"{len(results)} workload(s) tuned for {target_name}; {improved} now build from a tuning record")
