"""What dwc's TIR pass for strided copies gains on the stride-2 NCHW kernels.

usage: python benchmarks/strided_copy.py [THREADS] [ROUNDS]

Where NCHW windows are not read under masks (ARM, AVX2 float16; ``benchmarks/nchw_windows.py``
measures that choice on x86), the NCHW schedule copies each padded plane, with a column stride
of 2 split into even and odd columns, before its sums; ``dwc_compiler/tir_passes.py`` makes that
copy whole-vector loads and shuffles where TVM and LLVM left it scalar moves and 4-lane pieces.
For each stride-2 MobileNetV2 layer three kernels from the same hand schedule with the plane
copy: NCHW compiled with dwc's pipeline (``new``), NCHW with TVM's default pipeline (the copy as
it was, ``old``), and the NHWC kernel beside them (``dwc_compiler/benchmarking/nchw_kernels.py``).
Writes benchmarks/results/strided-copy-<stamp>.json and .md with the machine it ran on.
"""

from pathlib import Path

import dwc_compiler as dwc
from dwc_compiler import toolchain
from dwc_compiler.benchmarking.interleaved import int_arguments, write_results
from dwc_compiler.benchmarking.nchw_kernels import NEW, NHWC, OLD, measure_layer, method_text, results_table
from dwc_compiler.schedules import x86
from dwc_compiler.workloads import MOBILENET_V2

RESULTS = Path(__file__).resolve().parent / "results"


def _kernel(spec, dwc_pipeline: bool):
    """The hand-scheduled kernel of `spec` with the plane copy, compiled with dwc's TIR pipeline
    or TVM's default."""
    register, cheap = toolchain.register_cpu_pipeline, x86.masked_loads_cheap
    x86.masked_loads_cheap = lambda spec, target: False
    if not dwc_pipeline:
        toolchain.register_cpu_pipeline = lambda: "default"
    try:
        return dwc.build(spec, "host", use_records=False)
    finally:
        toolchain.register_cpu_pipeline, x86.masked_loads_cheap = register, cheap


def main() -> None:
    threads, rounds = int_arguments(1, 21)
    dwc.set_num_threads(threads)
    rows = []
    for name, spec in MOBILENET_V2.items():
        if spec.strides != (2, 2):
            continue
        row = measure_layer(name, spec, _kernel, rounds)
        rows.append(row)
        medians = row["median_us"]
        print(f"{name:20s} dwc pipeline {medians[NEW]:7.1f}  TVM pipeline {medians[OLD]:7.1f}  nhwc {medians[NHWC]:7.1f}"
              f" us  dwc/TVM pipeline {row['new_over_old']:.2f}x  NCHW/NHWC {row['new_over_nhwc']:.2f}x"
              f" (was {row['old_over_nhwc']:.2f}x)", flush=True)
    table = results_table(rows, "dwc pipeline", "TVM's pipeline")
    write_results(RESULTS, "strided-copy", f"Stride-2 NCHW kernels: dwc's TIR pipeline vs TVM's ({threads} thread(s))",
                  method_text(threads, rounds, ("dwc pipeline", "TVM pipeline", "nhwc")),
                  {"threads": threads, "rounds": rounds, "rows": rows}, table)
    print(table[-1])


if __name__ == "__main__":
    main()
