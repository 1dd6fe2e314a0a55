"""What reading NCHW windows from the input under masks gains over copying each padded plane.

usage: python benchmarks/nchw_windows.py [THREADS] [ROUNDS]

The x86 NCHW schedule loads each window row from the input itself, its padding columns masked
off, at a column stride of 2 as two contiguous masked loads and a permute (``schedules/cpu.py``,
``schedule_nchw``; ``dwc_compiler/tir_passes.py``); before, and still on ARM, each padded plane
was copied into a small buffer first (at stride 2 split by column parity). For each MobileNetV2
layer three kernels from the same hand schedule: NCHW with masked windows (as dwc builds it,
``new``), NCHW with the plane copy (``old``), and the NHWC kernel beside them
(``dwc_compiler/benchmarking/nchw_kernels.py``). Writes benchmarks/results/nchw-windows-<stamp>.json
and .md with the machine it ran on.
"""

from pathlib import Path
from unittest import mock

from dwc_compiler.benchmarking.nchw_kernels import built_now_and_before, run_comparison
from dwc_compiler.schedules import x86

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    plane_copy = built_now_and_before(lambda: mock.patch.object(x86, "masked_loads_cheap", lambda spec, target: False))
    run_comparison(RESULTS, "nchw-windows", "NCHW kernels: masked windows vs plane copies", plane_copy,
                   ("masked windows", "plane copy"))


if __name__ == "__main__":
    main()
