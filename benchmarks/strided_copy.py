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
from dwc_compiler.benchmarking.nchw_kernels import run_comparison
from dwc_compiler.schedules import x86

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
    run_comparison(RESULTS, "strided-copy", "Stride-2 NCHW kernels: dwc's TIR pipeline vs TVM's", _kernel,
                   ("dwc pipeline", "TVM's pipeline"), include=lambda spec: spec.strides == (2, 2))


if __name__ == "__main__":
    main()
