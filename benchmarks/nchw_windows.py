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

import dwc_compiler as dwc
from dwc_compiler.benchmarking.nchw_kernels import run_comparison
from dwc_compiler.schedules import x86

RESULTS = Path(__file__).resolve().parent / "results"


def _kernel(spec, masked_windows: bool):
    """The hand-scheduled kernel of `spec`, its windows read under masks or from a plane copy."""
    if masked_windows:
        return dwc.build(spec, "host", use_records=False)
    with mock.patch.object(x86, "masked_loads_cheap", lambda spec, target: False):
        return dwc.build(spec, "host", use_records=False)


def main() -> None:
    run_comparison(RESULTS, "nchw-windows", "NCHW kernels: masked windows vs plane copies", _kernel,
                   ("masked windows", "plane copy"))


if __name__ == "__main__":
    main()
