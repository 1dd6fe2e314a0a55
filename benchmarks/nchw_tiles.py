"""NCHW register tiles: the whole row's vectors by a few rows, against 8 rows by one vector.

usage: python benchmarks/nchw_tiles.py [THREADS] [ROUNDS] [TARGET]

The x86 NCHW schedule vectorizes along output columns. Its register tile had been up to 8 rows
of one vector; it now takes the vectors of an output row (the whole row where it has up to 7
on AVX-512) by about as many rows as make 8 sums, within a budget of the registers the window's
taps leave (``schedules/x86.py``, ``nchw_tiling``). For each MobileNetV2 layer three kernels on
`TARGET` (default ``host``; an x86 target this CPU runs, such as ``x86-avx2``): NCHW with the
new tile (``new``), NCHW with 8 rows by one vector (``old``), and the NHWC kernel beside them
(``dwc_compiler/benchmarking/nchw_kernels.py``). Writes
benchmarks/results/nchw-tiles-<TARGET>-<stamp>.json and .md with the machine it ran on.
"""

import sys
from pathlib import Path
from unittest import mock

from dwc_compiler.benchmarking.nchw_kernels import built_now_and_before, run_comparison
from dwc_compiler.ops.primfunc import accumulator_dtype
from dwc_compiler.schedules import x86
from dwc_compiler.schedules.cpu import plan_tiling

RESULTS = Path(__file__).resolve().parent / "results"
OLD_TILES = ((8, 1),)  # up to 8 rows, one vector: the tile before nchw_tiling


HAND_TILING = x86.default_tiling


def _old_tiling(spec, target_info):
    """The x86 rule's tiling, with the NCHW tile of before nchw_tiling."""
    if spec.data_format != "NCHW":
        return HAND_TILING(spec, target_info)
    return plan_tiling(spec, target_info.lanes(accumulator_dtype(spec.dtype)), 1, OLD_TILES)


def main() -> None:
    target = sys.argv[3] if len(sys.argv) > 3 else "host"
    old_tiles = built_now_and_before(lambda: mock.patch.object(x86, "default_tiling", _old_tiling), target)
    run_comparison(RESULTS, f"nchw-tiles-{target}", "NCHW register tiles: whole rows by a few rows vs 8 rows by one "
                   "vector", old_tiles, ("row tiles", "8x1 tiles"), target=target)


if __name__ == "__main__":
    main()
