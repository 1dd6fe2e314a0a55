"""What dwc's TIR pass for strided copies gains on the stride-2 NCHW kernels.

usage: python benchmarks/strided_copy.py [THREADS] [ROUNDS]

The NCHW schedule copies each padded plane, with a column stride of 2 split into even and odd
columns, before its sums; ``dwc_compiler/tir_passes.py`` makes that copy whole-vector loads and
shuffles where TVM and LLVM left it scalar moves and 4-lane pieces. For each stride-2 MobileNetV2
layer three kernels from the same hand schedule: NCHW compiled with dwc's pipeline (as dwc builds
it), NCHW with TVM's default pipeline (the copy as it was), and the NHWC kernel beside them.
Whole ``Kernel.call`` calls on plain NumPy arrays (not realigned), interleaved rounds, each block
warmed up first; medians, and the per-round ratios' medians. Writes
benchmarks/results/strided-copy-<stamp>.json and .md with the machine it ran on.
"""

import statistics
from pathlib import Path

import numpy as np

import dwc_compiler as dwc
from dwc_compiler import toolchain
from dwc_compiler.benchmarking.interleaved import int_arguments, interleaved_rounds, median_ratio, write_results
from dwc_compiler.workloads import MOBILENET_V2

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_CALLS, TIMED_CALLS = 5, 20
KINDS = ("nchw", "nchw-tvm-pipeline", "nhwc")
MAX_RELATIVE_ERROR = 1e-5


def _kernel(spec, dwc_pipeline: bool):
    """The hand-scheduled kernel of `spec`, compiled with dwc's TIR pipeline or TVM's default."""
    register = toolchain.register_cpu_pipeline
    if not dwc_pipeline:
        toolchain.register_cpu_pipeline = lambda: "default"
    try:
        return dwc.build(spec, "host", use_records=False)
    finally:
        toolchain.register_cpu_pipeline = register


def measure(name, spec, rounds: int) -> dict:
    """Interleaved rounds of the three kernels of one layer; each checked against the reference."""
    rng = np.random.default_rng(0)
    nhwc = rng.random(spec.input_shape).astype(np.float32)  # as NumPy allocates it: not realigned
    nchw = np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
    weights = rng.random(spec.filter_shape).astype(np.float32)
    nchw_spec = dwc.DepthwiseSpec.create(nchw.shape, spec.filter_shape, list(spec.strides), "SAME", "NCHW")
    kernels = {"nchw": (_kernel(nchw_spec, True), nchw), "nchw-tvm-pipeline": (_kernel(nchw_spec, False), nchw),
               "nhwc": (_kernel(spec, True), nhwc)}
    reference = spec.reference(nhwc, weights).transpose(0, 3, 1, 2)
    errors = {}
    for kind, (kernel, data) in kernels.items():
        result = kernel(data, weights)
        errors[kind] = float(np.max(np.abs((result if kind != "nhwc" else result.transpose(0, 3, 1, 2)) - reference))
                             / np.max(np.abs(reference)))
        assert errors[kind] <= MAX_RELATIVE_ERROR, f"{name} {kind}: max relative error {errors[kind]:.3g}"
    calls = {kind: (lambda kernel=kernel, data=data: kernel.call(data, weights)) for kind, (kernel, data) in kernels.items()}
    samples = interleaved_rounds(calls, rounds, WARMUP_CALLS, TIMED_CALLS)
    return {"layer": name, "median_us": {kind: statistics.median(values) for kind, values in samples.items()},
            "nchw_over_tvm_pipeline": median_ratio(samples["nchw"], samples["nchw-tvm-pipeline"]),
            "nchw_over_nhwc": median_ratio(samples["nchw"], samples["nhwc"]),
            "tvm_pipeline_over_nhwc": median_ratio(samples["nchw-tvm-pipeline"], samples["nhwc"]),
            "max_relative_error": errors, "samples_us": samples}


def main() -> None:
    threads, rounds = int_arguments(1, 21)
    dwc.set_num_threads(threads)
    rows = []
    for name, spec in MOBILENET_V2.items():
        if spec.strides != (2, 2):
            continue
        row = measure(name, spec, rounds)
        rows.append(row)
        medians = row["median_us"]
        print(f"{name:20s} " + "  ".join(f"{kind} {medians[kind]:7.1f}" for kind in KINDS)
              + f" us  dwc/TVM pipeline {row['nchw_over_tvm_pipeline']:.2f}x  NCHW/NHWC {row['nchw_over_nhwc']:.2f}x"
              f" (was {row['tvm_pipeline_over_nhwc']:.2f}x)", flush=True)
    method = (f"{threads} thread(s); whole Kernel.call calls on plain NumPy arrays (not realigned), the kernels' "
              f"own outputs; {rounds} interleaved rounds ({', '.join(KINDS)}, then reversed), each block "
              f"{WARMUP_CALLS} warm-up calls then {TIMED_CALLS} timed calls (block mean); medians over rounds, "
              f"ratios the medians of the per-round ratios")
    table = ["| layer | NCHW, dwc pipeline (us) | NCHW, TVM's pipeline (us) | NHWC (us) | dwc / TVM pipeline | "
             "NCHW / NHWC | before: NCHW / NHWC |", "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        medians = row["median_us"]
        table.append(f"| {row['layer']} | {medians['nchw']:.1f} | {medians['nchw-tvm-pipeline']:.1f} | "
                     f"{medians['nhwc']:.1f} | {row['nchw_over_tvm_pipeline']:.2f}x | {row['nchw_over_nhwc']:.2f}x | "
                     f"{row['tvm_pipeline_over_nhwc']:.2f}x |")
    table += ["", f"Geomean NCHW / NHWC: {statistics.geometric_mean([r['nchw_over_nhwc'] for r in rows]):.2f}x with "
                  f"dwc's pipeline, {statistics.geometric_mean([r['tvm_pipeline_over_nhwc'] for r in rows]):.2f}x "
                  f"with TVM's."]
    write_results(RESULTS, "strided-copy", f"Stride-2 NCHW kernels: dwc's TIR pipeline vs TVM's ({threads} thread(s))",
                  method, {"threads": threads, "rounds": rounds, "rows": rows}, table)
    print(table[-1])


if __name__ == "__main__":
    main()
