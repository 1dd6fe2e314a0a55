"""What pairing the stride-2 window loads of neighbouring taps gains for NCHW kernels.

usage: python benchmarks/nchw_paired_loads.py [THREADS] [ROUNDS]

At column stride 2, each tap of a window row reads every other element of the input row: a
strided vector load, which dwc's TIR pass makes two contiguous loads and one shuffle. The first
and second taps of a row read neighbouring elements, so the pass now has both shuffle the same
two loads, even lanes and odd (``dwc_compiler/tir_passes.py``, ``_paired_strided_loads``): four
loads per window row of three taps instead of six. For each MobileNetV2 layer three kernels from
the same hand schedule: NCHW with the loads paired (as dwc builds it, ``new``), NCHW without
(``old``), and the NHWC kernel beside them (``dwc_compiler/benchmarking/nchw_kernels.py``; the
stride-1 layers have no such loads and serve as a control). Writes
benchmarks/results/nchw-paired-loads-<stamp>.json and .md with the machine it ran on.
"""

from pathlib import Path
from unittest import mock

from dwc_compiler import tir_passes
from dwc_compiler.benchmarking.nchw_kernels import built_now_and_before, run_comparison

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    unpaired = built_now_and_before(lambda: mock.patch.object(tir_passes, "_paired_strided_loads",
                                                              lambda loop, bindings: loop))
    run_comparison(RESULTS, "nchw-paired-loads", "NCHW kernels: stride-2 loads of neighbouring taps paired or not",
                   unpaired, ("paired", "unpaired"))


if __name__ == "__main__":
    main()
