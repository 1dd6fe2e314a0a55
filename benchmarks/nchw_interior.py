"""What giving the interior NCHW column blocks plain loads gains over masking every window load.

usage: python benchmarks/nchw_interior.py [THREADS] [ROUNDS]

The x86 NCHW schedule reads each window row from the input under the mask of its real columns
(``benchmarks/nchw_windows.py``); every load was masked, though most column blocks of a wide row
read no padding at all. The schedule now marks the blocks whose windows lie inside the input's
columns (``schedules/cpu.py``, ``interior_column_blocks``), and dwc's TIR pass gives them loops of
their own in which the tests it proves true are gone and the loads plain; in the border blocks,
so are the vectors that read no padding (``dwc_compiler/tir_passes.py``, ``_peeled_interior``).
For each MobileNetV2 layer three kernels from the same hand schedule: NCHW with the interior
peeled (as dwc builds it, ``new``), NCHW with every window load masked (``old``), and the NHWC
kernel beside them (``dwc_compiler/benchmarking/nchw_kernels.py``). Writes
benchmarks/results/nchw-interior-<stamp>.json and .md with the machine it ran on.
"""

from pathlib import Path
from unittest import mock

from dwc_compiler import tir_passes
from dwc_compiler.benchmarking.nchw_kernels import built_now_and_before, run_comparison

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    all_masked = built_now_and_before(lambda: mock.patch.object(tir_passes, "_peeled_interior",
                                                                lambda loop, bindings: loop))
    run_comparison(RESULTS, "nchw-interior", "NCHW kernels: interior column blocks peeled vs every load masked",
                   all_masked, ("interior peeled", "all masked"))


if __name__ == "__main__":
    main()
