"""What keeping stride-2 NCHW sums in lane order gains on AVX2.

usage: python benchmarks/nchw_lane_order.py [THREADS] [ROUNDS]

At column stride 2 each window load of an NCHW kernel picks the even (or odd) elements of two
input vectors. On AVX2 that pick in column order is two instructions (``vshufps`` and
``vpermpd``); in the order an in-lane ``vshufps`` gives, one, and the sums kept in that order are
put back once, at the row's store (``dwc_compiler/tir_lane_order.py``). For each MobileNetV2
layer three kernels from the same hand schedule: NCHW with the sums in lane order (as dwc builds
it, ``new``), NCHW in column order (``old``), and the NHWC kernel beside them
(``dwc_compiler/benchmarking/nchw_kernels.py``; the stride-1 layers have no such picks and serve
as a control). On an AVX-512 CPU the pass leaves the kernels alone (``vpermt2ps`` picks in one
instruction), so run it on an AVX2 one. Writes benchmarks/results/nchw-lane-order-<stamp>.json
and .md with the machine it ran on.
"""

from pathlib import Path
from unittest import mock

from dwc_compiler import tir_lane_order
from dwc_compiler.benchmarking.nchw_kernels import built_now_and_before, run_comparison

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    column_order = built_now_and_before(lambda: mock.patch.object(tir_lane_order, "_sums_in_lane_order",
                                                                  lambda body, buffer, bindings: body))
    run_comparison(RESULTS, "nchw-lane-order", "NCHW kernels: stride-2 sums in lane order or in column order",
                   column_order, ("lane order", "column order"))


if __name__ == "__main__":
    main()
