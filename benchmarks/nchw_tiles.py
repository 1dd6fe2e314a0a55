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

import dwc_compiler as dwc
from dwc_compiler.benchmarking.nchw_kernels import run_comparison
from dwc_compiler.ops.primfunc import accumulator_dtype
from dwc_compiler.schedules import x86
from dwc_compiler.schedules.cpu import plan_tiling

RESULTS = Path(__file__).resolve().parent / "results"
OLD_TILES = ((8, 1),)  # up to 8 rows, one vector: the tile before nchw_tiling


def _kernel_for(target: str):
    """Builds `spec`'s hand-scheduled NCHW kernel for `target`, with the new tile or the old."""

    def build(spec, new_tile: bool):
        if new_tile:
            return dwc.build(spec, target, use_records=False)
        hand = x86.default_tiling

        def old_tiling(spec, target_info):
            if spec.data_format != "NCHW":
                return hand(spec, target_info)
            return plan_tiling(spec, target_info.lanes(accumulator_dtype(spec.dtype)), 1, OLD_TILES)

        with mock.patch.object(x86, "default_tiling", old_tiling):
            return dwc.build(spec, target, use_records=False)

    return build


def main() -> None:
    target = sys.argv[3] if len(sys.argv) > 3 else "host"
    run_comparison(RESULTS, f"nchw-tiles-{target}", "NCHW register tiles: whole rows by a few rows vs 8 rows by one "
                   "vector", _kernel_for(target), ("row tiles", "8x1 tiles"), target=target)


if __name__ == "__main__":
    main()
