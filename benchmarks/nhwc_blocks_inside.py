"""NHWC channel blocks inside the column tiles, against column tiles inside each channel block.

usage: python benchmarks/nhwc_blocks_inside.py [THREADS] [ROUNDS]

NHWC kernels with row tiles in parallel ran each row tile's channel blocks one after the other,
each over all the tile's columns; neighbouring blocks share cache lines (two AVX2 vectors a
line), and where one block's sweep of the tile's input lines passes what L1 keeps, the next
block read them again from L2 or L3. With AVX2's 16 registers, the x86 rule now runs the channel
blocks inside the column tiles (``schedules/x86.py``, ``_blocks_inside_columns``). For each
workload of ``dwc bench`` (the MobileNetV2 layers and the others) with row tiles in parallel,
both hand-scheduled kernels (no tuning records), whole ``Kernel.call`` calls on a
plain NumPy input (as NumPy allocates it) into the kernel's own output, in interleaved rounds.
Writes benchmarks/results/nhwc-blocks-inside-<THREADS>t-<stamp>.json and .md with the machine
it ran on.
"""

import dataclasses
import statistics
from pathlib import Path
from unittest import mock

import numpy as np

import dwc_compiler as dwc
from dwc_compiler.benchmarking.interleaved import int_arguments, interleaved_rounds, median_ratio, write_results
from dwc_compiler.ops.compare import max_relative_error
from dwc_compiler.schedules import cpu, x86
from dwc_compiler.targets import resolve_target
from dwc_compiler.workloads import EXTRA, MOBILENET_V2

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_CALLS, TIMED_CALLS = 5, 20
MAX_RELATIVE_ERROR = 1e-5
INSIDE, OUTSIDE = "blocks-inside", "blocks-outside"


def _kernel(spec, inside: bool):
    """The hand-scheduled kernel of `spec` with its channel blocks inside the column tiles or not."""
    hand = x86.default_tiling
    with mock.patch.object(x86, "default_tiling", lambda spec, target: dataclasses.replace(
            hand(spec, target), blocks_inside_columns=inside)):
        return dwc.build(spec, "host", use_records=False)


def measure(name: str, spec, rounds: int) -> dict:
    """Both kernels of `spec`, checked against the reference, then timed in interleaved rounds."""
    rng = np.random.default_rng(0)
    data = rng.random(spec.input_shape).astype(np.float32)  # as NumPy allocates it: not realigned
    weights = rng.random(spec.filter_shape).astype(np.float32)
    reference = spec.reference(data, weights)
    kernels = {INSIDE: _kernel(spec, True), OUTSIDE: _kernel(spec, False)}
    for kind, kernel in kernels.items():
        error = max_relative_error(kernel(data, weights), reference)
        if error > MAX_RELATIVE_ERROR:
            raise AssertionError(f"{name} {kind}: max relative error {error:.3g}")
    calls = {kind: (lambda kernel=kernel: kernel.call(data, weights)) for kind, kernel in kernels.items()}
    samples = interleaved_rounds(calls, rounds, WARMUP_CALLS, TIMED_CALLS)
    return {"layer": name, "median_us": {kind: statistics.median(values) for kind, values in samples.items()},
            "inside_over_outside": median_ratio(samples[INSIDE], samples[OUTSIDE]), "samples_us": samples}


def main() -> None:
    threads, rounds = int_arguments(1, 21)
    dwc.set_num_threads(threads)
    target = resolve_target("host")
    rows = []
    for name, spec in {**MOBILENET_V2, **EXTRA}.items():
        tiling = x86.default_tiling(spec, target)
        if cpu.channel_group_blocks(spec, tiling):
            continue  # channel groups in parallel: no such order
        row = {**measure(name, spec, rounds), "rule": "inside" if tiling.blocks_inside_columns else "outside"}
        rows.append(row)
        medians = row["median_us"]
        print(f"{name:20s} inside {medians[INSIDE]:7.1f}  outside {medians[OUTSIDE]:7.1f} us  "
              f"inside / outside {row['inside_over_outside']:.2f}x (rule: {row['rule']})", flush=True)
    table = ["| layer | rule | blocks inside (us) | blocks outside (us) | inside / outside |",
             "|---|---|---:|---:|---:|"]
    for row in rows:
        medians = row["median_us"]
        table.append(f"| {row['layer']} | {row['rule']} | {medians[INSIDE]:.1f} | {medians[OUTSIDE]:.1f} | "
                     f"{row['inside_over_outside']:.2f}x |")
    method = (f"{threads} thread(s); hand schedules, no tuning records; whole Kernel.call calls on a plain NumPy "
              f"input into the kernel's own output; {rounds} interleaved rounds (then reversed), each block "
              f"{WARMUP_CALLS} warm-up calls then {TIMED_CALLS} timed calls (block mean); medians over rounds, "
              f"ratios the medians of the per-round ratios")
    write_results(RESULTS, f"nhwc-blocks-inside-{threads}t",
                  f"NHWC channel blocks inside the column tiles ({threads} thread(s))", method,
                  {"threads": threads, "rounds": rounds, "rows": rows}, table)


if __name__ == "__main__":
    main()
