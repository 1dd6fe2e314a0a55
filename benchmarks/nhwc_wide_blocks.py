"""NHWC channel blocks of several vectors on wide planes, against blocks of one vector.

usage: python benchmarks/nhwc_wide_blocks.py [THREADS] [ROUNDS]

NHWC kernels with row tiles in parallel sweep each row tile's input rows once per channel block.
Where one block's band of those rows passes half an L1, the x86 rule now gives a block up to 3
vectors in a tile of 2x2 pixels (``schedules/x86.py``, ``default_tiling``); before, a block
was one vector in a tile of 2x4. For each MobileNetV2 layer whose tile the rule changes, and
56x56x144-s1 / -s2 beside them as controls (both tiles timed there too), the two hand-scheduled
kernels (no tuning records) on a plain NumPy input (as NumPy allocates it) and on a 64-byte-
aligned copy, in interleaved rounds; every call writes one of the same 6 output arrays in turn
(where an output lies moves a kernel's time). Writes
benchmarks/results/nhwc-wide-blocks-<THREADS>t-<stamp>.json and .md with the machine it ran on.
"""

import statistics
from pathlib import Path
from unittest import mock

import numpy as np

import dwc_compiler as dwc
from dwc_compiler.benchmarking.interleaved import int_arguments, interleaved_rounds, median_ratio, write_results
from dwc_compiler.ops.compare import max_relative_error
from dwc_compiler.ops.primfunc import accumulator_dtype
from dwc_compiler.schedules import x86
from dwc_compiler.schedules.cpu import plan_tiling
from dwc_compiler.targets import resolve_target
from dwc_compiler.workloads import MOBILENET_V2

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_CALLS, TIMED_CALLS, PLACES = 6, 24, 6
CONTROLS = ("mbv2-56x56x144-s1", "mbv2-56x56x144-s2")
MAX_RELATIVE_ERROR = 1e-5


def _kernel(spec, wide: bool):
    """The hand-scheduled kernel of `spec` with the rule's wide tile (`wide`: up to 3 vectors in
    2x2 pixels, forced on the controls too) or with one vector in 2x4 pixels."""
    vectors, tiles = (x86.MAX_WIDE_BLOCK_VECTORS, x86.WIDE_BLOCK_TILES) if wide else (1, x86.SMALL_WINDOW_TILES)
    with mock.patch.object(x86, "default_tiling", lambda spec, target: plan_tiling(
            spec, target.lanes(accumulator_dtype(spec.dtype)), vectors, tiles)):
        return dwc.build(spec, "host", use_records=False)


def measure(name: str, spec, rounds: int) -> dict:
    """Both kernels of `spec` on both inputs, checked, then timed in interleaved rounds."""
    rng = np.random.default_rng(0)
    plain = rng.random(spec.input_shape).astype(np.float32)
    aligned = dwc.empty_aligned(spec.input_shape, np.float32)
    aligned[...] = plain
    weights = rng.random(spec.filter_shape).astype(np.float32)
    reference = spec.reference(plain, weights)
    kernels = {"wide": _kernel(spec, True), "one-vector": _kernel(spec, False)}
    outputs = [dwc.empty_aligned(spec.output_shape, np.float32) for _ in range(PLACES)]
    calls = {}
    for kind, kernel in kernels.items():
        error = max_relative_error(kernel(plain, weights), reference)
        if error > MAX_RELATIVE_ERROR:
            raise AssertionError(f"{name} {kind}: max relative error {error:.3g}")
        for input_kind, data in (("plain", plain), ("aligned", aligned)):
            turn = [0]

            def call(kernel=kernel, data=data, turn=turn):
                turn[0] = (turn[0] + 1) % PLACES
                kernel.call(data, weights, out=outputs[turn[0]])

            calls[f"{kind}/{input_kind}"] = call
    samples = interleaved_rounds(calls, rounds, WARMUP_CALLS, TIMED_CALLS)
    return {"layer": name, "median_us": {way: statistics.median(values) for way, values in samples.items()},
            "wide_over_one_vector": {input_kind: median_ratio(samples[f"wide/{input_kind}"],
                                                              samples[f"one-vector/{input_kind}"])
                                     for input_kind in ("plain", "aligned")},
            "samples_us": samples}


def main() -> None:
    threads, rounds = int_arguments(1, 15)
    dwc.set_num_threads(threads)
    target = resolve_target("host")
    rows = []
    for name, spec in MOBILENET_V2.items():
        wide_rule = x86.default_tiling(spec, target).vectors_per_block > 1
        if not wide_rule and name not in CONTROLS:
            continue
        row = {**measure(name, spec, rounds), "rule": "wide" if wide_rule else "one vector (control)"}
        rows.append(row)
        medians, ratios = row["median_us"], row["wide_over_one_vector"]
        print(f"{name:20s} " + "  ".join(f"{way} {value:7.1f}" for way, value in medians.items())
              + f" us  wide / one vector: plain {ratios['plain']:.2f}x aligned {ratios['aligned']:.2f}x", flush=True)
    table = ["| layer | rule's tile | wide, plain (us) | one vector, plain (us) | wide, aligned (us) | "
             "one vector, aligned (us) | wide / one vector, plain | wide / one vector, aligned |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        medians, ratios = row["median_us"], row["wide_over_one_vector"]
        table.append(f"| {row['layer']} | {row['rule']} | {medians['wide/plain']:.1f} | {medians['one-vector/plain']:.1f} | "
                     f"{medians['wide/aligned']:.1f} | {medians['one-vector/aligned']:.1f} | "
                     f"{ratios['plain']:.2f}x | {ratios['aligned']:.2f}x |")
    method = (f"{threads} thread(s); hand schedules, no tuning records; Kernel.call into one of {PLACES} shared "
              f"outputs in turn; {rounds} interleaved rounds (then reversed), each block {WARMUP_CALLS} warm-up "
              f"calls then {TIMED_CALLS} timed calls (block mean); medians over rounds, ratios the medians of "
              f"the per-round ratios")
    write_results(RESULTS, f"nhwc-wide-blocks-{threads}t",
                  f"NHWC channel blocks of several vectors ({threads} thread(s))", method,
                  {"threads": threads, "rounds": rounds, "rows": rows}, table)


if __name__ == "__main__":
    main()
