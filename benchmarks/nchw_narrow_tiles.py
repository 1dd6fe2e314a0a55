"""NCHW register tiles on AVX2: one vector by two rows against whole rows' vectors by a few rows.

usage: python benchmarks/nchw_narrow_tiles.py [THREADS] [ROUNDS] [TARGET]

On AVX-512 the NCHW register tile takes the vectors of an output row by a few rows
(``schedules/x86.py``, ``row_tiling``); with AVX2's 16 registers the window's taps, the masks of
its border loads and the loaded vectors leave no room for that many sums, and the tile is one
vector by two rows (``nchw_tiling``). For each MobileNetV2 layer three kernels on `TARGET`
(default ``host``; an x86 target with AVX2 this CPU runs, such as ``x86-avx2``): NCHW with the
narrow tile (``new``), NCHW with the row tile (``old``), and the NHWC kernel beside them
(``dwc_compiler/benchmarking/nchw_kernels.py``). Writes
benchmarks/results/nchw-narrow-tiles-<TARGET>-<stamp>.json and .md with the machine it ran on.
"""

import sys
from pathlib import Path
from unittest import mock

from dwc_compiler.benchmarking.nchw_kernels import built_now_and_before, run_comparison
from dwc_compiler.schedules import x86

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    target = sys.argv[3] if len(sys.argv) > 3 else "host"
    row_tiles = built_now_and_before(lambda: mock.patch.object(x86, "nchw_tiling", x86.row_tiling), target)
    run_comparison(RESULTS, f"nchw-narrow-tiles-{target}", "NCHW register tiles on AVX2: one vector by two rows vs "
                   "whole rows' vectors", row_tiles, ("narrow tiles", "row tiles"), target=target)


if __name__ == "__main__":
    main()
