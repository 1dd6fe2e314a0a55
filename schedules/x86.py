"""x86 (AVX2 / AVX-512) schedule rule for depthwise convolution.

The story: a register tile is a block of channel vectors (8 float32 lanes on AVX2, 16 on
AVX-512) by a small block of output pixels; the filter window is unrolled around it, so every
input vector loaded feeds several accumulators. Measured on the MobileNetV2 layers (one
thread, AVX-512, benchmarks/results/tiling-sweep-*.json, aligned inputs): 2 rows x 4 columns of
one vector is best or within 5% on the large 3x3 layers, where two output rows share two of
their three input rows; 2x2 on 14x14 outputs; a single row of 7 columns on 7x7 outputs. A 5x5
window or a dilation shares fewer inputs between rows and prefers one row of 4-7 columns. Wider
channel blocks pay on the widest planes only, whose row tiles sweep a band of input rows past
half an L1 once per block (``default_tiling``: 112x112x32-s1 and 112x112x96-s2). NCHW
vectorizes along output columns instead; its register tile takes the vectors of an output row
by a few rows on AVX-512, one vector by two rows on AVX2 (``nchw_tiling``). For NHWC inputs off a
vector boundary (NumPy's arrays), ``aligned_variants`` adds kernels whose channel blocks start
at the input's first vector boundary, with the register tile of the kernel for aligned inputs,
where the split loads cost more than the block of extra work they take.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import numpy as np

from ..ops.channel_blocks import ChannelBlocks
from ..ops.depthwise import DepthwiseSpec, input_span, sum_width
from ..ops.primfunc import accumulator_dtype, prim_func
from .base import AlignedVariants, as_schedule
from .cpu import (CACHE_LINE_BYTES, L2_BYTES, CpuTiling, apply_cpu_rule, channel_group_blocks, group_blocks_of,
                  largest_divisor_at_most, plan_tiling, schedule_nhwc, tiling_of, vector_lanes_for)
from .cpu_separable import apply_separable_rule

NAME = "hand:x86"

SMALL_WINDOW_TILES = ((2, 4), (2, 2), (1, 7), (1, 4), (1, 8))
LARGE_WINDOW_TILES = ((1, 4), (1, 7), (1, 8), (1, 5), (1, 6))

# An NCHW register tile: the row's vectors (up to this many, as many as divide the row's and fit
# the sums' budget) by about as many rows as make NCHW_TILE_SUMS accumulators.
MAX_NCHW_ROW_VECTORS = 7
NCHW_TILE_SUMS = 8
MIN_NCHW_SUMS_BUDGET = 4
# With AVX2's 16 registers, an NCHW tile is one vector by this many rows (or the height's next
# divisor): see `nchw_tiling`.
NARROW_NCHW_TILE_ROWS = 2

# NHWC row tiles in parallel sweep the tile's input rows once per channel block. Where one
# block's band of them (rows x width x one vector) passes half an L1, a block takes up to this
# many vectors (as many as divide a pixel's), in a tile of WIDE_BLOCK_TILES pixels: on AVX-512,
# where it was measured (its 32 registers hold the 12 sums of 3 vectors by 2x2 pixels).
L1_BYTES = 48 << 10  # a core's L1 data cache on the machines measured
MAX_WIDE_BLOCK_VECTORS = 3
WIDE_BLOCK_TILES = ((2, 2), (1, 4), (1, 2))


# With AVX2's 16 registers, NHWC row tiles in parallel run their channel blocks inside their
# column tiles (cpu.schedule_nhwc, CpuTiling.blocks_inside_columns) where the register tile's
# input window over all channels is at most MAX_INSIDE_WINDOW_BYTES (`_tile_window_bytes`), for a
# channel multiplier of 1. Each channel block of a row tile sweeps the tile's input rows, and
# neighbouring blocks share cache lines (two AVX2 vectors a line): with the blocks outside the
# column tiles, the next block found those lines in L1 only where one block's sweep of them
# fitted beside what else the tile kept there. Inside, a tile's window is read for all its
# channels while it is in L1, the next tile finding the columns they share there too, and the
# filter's taps are loaded for each tile rather than once per block. On AVX2 this decides every
# NHWC kernel of the rule but the small planes', which run groups of blocks in parallel
# (cpu.group_size: groups of two lines, a block being half of one).
# Measured on the 2-core znver3 machine (32 KB L1; hand schedules, whole calls on plain NumPy
# inputs, 21 rounds, benchmarks/results/nhwc-blocks-inside-*-20261203-143*.md), time inside over
# outside at 1 / 2 threads, by window: 112x112x32-s1 (3 KB) 0.65x / 0.62x, 112x112x96-s2 (17 KB)
# 0.65x / 0.80x, 56x56x144-s1 (14 KB) 0.87x / 0.82x, 56x56x144-s2 (25 KB) 0.94x / 0.88x,
# 28x28x192-s1 (18 KB) 0.83x / 0.89x, 28x28x192-s2 (19 KB) 0.74x / 0.93x, 14x14x384-s1 (24 KB)
# 0.91x / 0.89x, batch8-28x28x192-s1 (18 KB) 0.80x / 0.73x. Beyond the bound: dil2-28x28x192-s1
# (30 KB) 0.95x / 1.03x, 14x14x576-s1 (36 KB) 0.98x / 0.98x (1.13x and 1.14x at 1 thread in
# two earlier runs, quick checks), k5-28x28x240-s1 (38 KB) 0.99x / 1.02x, 14x14x576-s2 and
# 7x7x960 (101 KB) 0.97-1.02x. With a multiplier of 2, mult2-28x28x96-s1 (9 KB) lost: 1.05x /
# 1.15x. On AVX-512, whose blocks are whole lines, the wide blocks below serve the widest planes
# instead.
MAX_INSIDE_WINDOW_BYTES = 28 << 10


def vector_registers(target) -> int:
    """The vector registers of the x86 `target`: 32 with AVX-512, 16 with AVX2."""
    return 32 if target.lanes("float32") >= 16 else 16


def default_tiling(spec: DepthwiseSpec, target) -> CpuTiling:
    """The hand-picked tiling for `spec` on the x86 `target`."""
    lanes = target.lanes(accumulator_dtype(spec.dtype))
    registers = vector_registers(target)
    if spec.data_format == "NCHW":
        return nchw_tiling(spec, lanes, registers)
    small_window = spec.filter_height * spec.filter_width <= 9 and spec.dilations == (1, 1)
    tiling = plan_tiling(spec, lanes, 1, SMALL_WINDOW_TILES if small_window else LARGE_WINDOW_TILES)
    row_tiles_in_parallel = not channel_group_blocks(spec, tiling)
    if registers < 32:  # AVX2: the blocks inside the column tiles (MAX_INSIDE_WINDOW_BYTES)
        inside = (row_tiles_in_parallel and spec.multiplier == 1
                  and _tile_window_bytes(spec, tiling) <= MAX_INSIDE_WINDOW_BYTES)
        return dataclasses.replace(tiling, blocks_inside_columns=inside)
    if not small_window or not row_tiles_in_parallel or _block_band_bytes(spec, tiling) <= L1_BYTES // 2:
        return tiling
    wide = plan_tiling(spec, lanes, MAX_WIDE_BLOCK_VECTORS, WIDE_BLOCK_TILES)
    # Only a block that is wider, and still under row tiles in parallel (a wider block can pass
    # the channel groups' whole-cache-line test that one vector failed).
    return wide if wide.vectors_per_block > 1 and not channel_group_blocks(spec, wide) else tiling


def _tile_window_bytes(spec: DepthwiseSpec, tiling: CpuTiling) -> int:
    """The input one NHWC register tile of `tiling` reads over all channels: its window's rows
    by its columns by the input's channels."""
    (row_stride, col_stride), (row_dilation, col_dilation) = spec.strides, spec.dilations
    rows = input_span(tiling.tile_rows, row_stride, spec.filter_height, row_dilation)
    cols = input_span(tiling.tile_cols, col_stride, spec.filter_width, col_dilation)
    return rows * cols * spec.in_channels * spec.itemsize


def _block_band_bytes(spec: DepthwiseSpec, tiling: CpuTiling) -> int:
    """The input one channel block of one NHWC row tile reads: its rows by the input's width by
    a vector.

    Measured (``benchmarks/results/nhwc-wide-blocks-*.md``): 112x112x32-s1 (28 KB a band on
    AVX-512) and 112x112x96-s2 (36 KB) gain from blocks of all 2, or 3 of their 6, vectors in 2x2
    pixel tiles; 56x56x144 (14-18 KB) do not."""
    rows = input_span(tiling.tile_rows, spec.strides[0], spec.filter_height, spec.dilations[0])
    return rows * spec.in_width * tiling.vector_lanes * spec.itemsize


def nchw_tiling(spec: DepthwiseSpec, lanes: int, registers: int) -> CpuTiling:
    """The NCHW register tile on `lanes`-wide vectors and `registers` vector registers: with
    32 registers (AVX-512) :func:`row_tiling`'s; with 16 (AVX2), one vector by
    ``NARROW_NCHW_TILE_ROWS`` rows, or the smallest divisor of the output's height above 1 (7x7
    planes: 7 rows).

    With 16 registers the window's 9 taps, the masks of its border loads and the loaded vectors
    leave no room for more sums: LLVM spilled them. Measured on the 2-core znver3 machine (1
    thread, 15 interleaved rounds, quick checks, with the interior column blocks peeled), time
    with 2 rows by one vector over :func:`row_tiling`'s tile: 28x28x192-s1 0.84x, 14x14x384-s1
    0.85x, 14x14x576-s1 0.83x, 56x56x144-s1 0.93x, 112x112x32-s1 0.97x; 28x28x192-s2 0.75x,
    56x56x144-s2 0.87x, 112x112x96-s2 0.96x; on 7-row planes 1 row took 1.17-1.21x the time of 7;
    beyond MobileNetV2, mult2-28x28x96-s1 0.90x, batch8-28x28x192-s1 0.85x, k5-28x28x240-s1 0.99x,
    dil2-28x28x192-s1 1.06x (its dilated taps share fewer loads between rows).
    Committed A/B run: ``benchmarks/results/nchw-narrow-tiles-*.md``."""
    if registers >= 32:
        return row_tiling(spec, lanes, registers)
    width = sum_width(spec)
    rows = next((rows for rows in range(NARROW_NCHW_TILE_ROWS, spec.out_height + 1) if spec.out_height % rows == 0),
                spec.out_height)
    return CpuTiling(vector_lanes_for(width, lanes), 1, rows, 1)


def row_tiling(spec: DepthwiseSpec, lanes: int, registers: int) -> CpuTiling:
    """The NCHW register tile of whole rows' vectors on `lanes`-wide vectors and `registers`
    vector registers (AVX-512's, see :func:`nchw_tiling`).

    The sums' budget is what the window's taps and two loaded vectors leave of the registers
    (at least ``MIN_NCHW_SUMS_BUDGET``; on AVX-512's 32 a 3x3 window leaves 21, on AVX2's 16,
    whose tile this was before the narrow one, 5). The tile takes the most vectors of an output
    row (:func:`~dwc_compiler.ops.depthwise.sum_width` columns) that divide the row's, up to
    ``MAX_NCHW_ROW_VECTORS`` and the budget: the whole row wherever it has up to 7 vectors on
    AVX-512. Its rows aim at ``NCHW_TILE_SUMS`` sums within the budget, and are the divisor of
    the output's height nearest that aim, which may pass the budget (a prime height of 13: 13
    rows).

    Measured against the tile of 8 rows by one vector it replaces (``benchmarks/nchw_tiles.py``,
    results in ``benchmarks/results/nchw-tiles-*.md``): a window row's input vectors then serve
    every vector of the output row and several rows at once."""
    width = sum_width(spec)
    vector_lanes = vector_lanes_for(width, lanes)
    sums_budget = max(MIN_NCHW_SUMS_BUDGET, registers - spec.filter_height * spec.filter_width - 2)
    vectors = largest_divisor_at_most(width // vector_lanes, min(MAX_NCHW_ROW_VECTORS, sums_budget))
    rows_wanted = max(1, min(-(-NCHW_TILE_SUMS // vectors), sums_budget // vectors))
    divisors = [rows for rows in range(1, spec.out_height + 1) if spec.out_height % rows == 0]
    return CpuTiling(vector_lanes, vectors, min(divisors, key=lambda rows: (abs(rows - rows_wanted), rows)), 1)


# Kernels for inputs off a vector boundary (ops/channel_blocks.py) compute one block per pixel
# more than the pixel's C / L and pay off where misaligned loads cost more than that. Measured
# (1 thread, Emerald Rapids, 15-21 interleaved rounds of the kernels alone; the variant / the
# usual kernel on the same input 16, 32 or 48 bytes past a 64-byte boundary): 7x7x960 0.75-0.84,
# 14x14x576-s1 0.76-0.93 and -s2 0.73-0.81, 28x28x192-s2 0.82-0.84, 56x56x144-s2 0.83-0.86: all
# tiles of one row, or at stride 2, loading 3.8 or more input vectors per output vector. Tiles
# of several rows at row stride 1, which share input rows, lose under row tiles in parallel (as
# the variants all ran then; channel-parallel kernels have theirs since, below): 14x14x384 (2x2) 0.99-1.06,
# 28x28x192-s1 1.10 and 56x56x144-s1 1.07 (2x4: the split loads cost them 1.04-1.14x only); so
# does 112x112x96-s2 (1.08: its 4.8 MB input streams from L3 either way).
#
# Those figures held the usual kernel's output at the input's offset too; the stores pay most
# for a misaligned line, and the lean call hands kernels without variants an aligned output. A
# variant with row tiles in parallel then lost where the usual kernel runs channel blocks in
# parallel (7x7x960: 1.08-1.15x the time of the usual kernel with an aligned output, quick
# checks). Variants of such kernels run channel blocks in parallel too. In the blocks' own order
# they took 1.58-1.86x the aligned input's time at 2 threads on 14x14x384-s1, 14x14x576-s1 and
# 7x7x960 (the usual kernel 1.13-1.24x; a quick check, 11 rounds, inputs at 8 places each), two
# threads writing the lines of the output at the input's offset that hold two pixels, and ran on
# one thread only; with the blocks that share lines first (ops/channel_blocks.py), 0.81x, 0.96x
# and 0.90x the usual kernel's time at 2 threads, 1.02x, 0.98x and 0.97x the aligned input's
# (input 16 bytes past a boundary, 41 rounds, a quick check). Measured
# in benchmarks/results/alignment-placements-20261201-1721.md (1 thread, 11 rounds, each
# offset's inputs at 8 places in a page; time over the aligned inputs', with / without the
# variants): 14x14x384-s1 1.07-1.09 / 1.15-1.18, 14x14x576-s1 1.01-1.08 / 1.22-1.25, 7x7x960
# 1.01-1.04 / 1.11-1.13, 14x14x576-s2 1.02-1.10 / 1.30-1.34, 28x28x192-s2 1.17-1.23 / 1.35-1.38.

# Blocks a variant computes per pixel against the C / L of main (one more, rounded up to whole
# parallel tasks: register tiles, or groups of them): beyond this, the extra blocks cost more
# than the aligned loads gain.
MAX_ALIGNED_BLOCKS_RATIO = 1.25
MIN_LOADS_PER_OUTPUT = 3.5  # input vectors a register tile loads per output vector, per window
MAX_ALIGNED_INPUT_BYTES = L2_BYTES
# Below this many outputs reading the input's address (~0.7 us a call when this was measured;
# 0.3-0.9 us for NumPy arrays since the lean call reads it from one DLPack capsule,
# benchmarks/results/call-overhead-20261201-1801.md) costs more than the split loads (the 7x7x576
# output of 14x14x576-s2 has 28 k).
MIN_ALIGNED_OUTPUTS = 16 << 10

# NumPy and glibc place arrays on 16-byte boundaries: the offsets past a vector boundary that
# get kernels of their own are multiples of this.
ALIGNED_OFFSET_STEP_BYTES = 16


def aligned_variants(spec: Any, target: Any, main: Any) -> AlignedVariants | None:
    """The kernels for NHWC inputs off a vector boundary, by the input's offset in bytes past
    one (the vector being ``lanes * itemsize`` bytes): each the PrimFunc over its channel blocks
    with the register tile of `main` (the schedule of ``main``, a tuning record's or the hand
    one), made when first needed (making one costs ~0.1 s); None (not mine) unless `target` is
    of the x86 family.

    Where ``main`` runs row tiles in parallel, so do they; where it runs groups of channel
    blocks in parallel (small planes: ``cpu.channel_group_blocks``; a tuning record's order is
    read from its loops: ``cpu.group_blocks_of``), so do they, starting each
    pixel's blocks at the last aligned one so that no two threads write one line of the output,
    for calls on up to ``max_threads`` threads (``ops/channel_blocks.py``; 14x14x384-s1: 8), the
    blocks a pixel rounded up to whole groups (14x14x576-s2: 40 blocks of 16 for 36 vectors).
    Without any where they do not pay (tiles of several rows at row stride 1 under row tiles in
    parallel; channel groups in parallel whose blocks are less than a cache line, AVX2's, where
    the variants took 1.14x the time of ``main`` on 14x14x576-s2 and 1.18x on 7x7x960, 0.98-1.00x
    on 14x14x384-s1 and 14x14x576-s1, 1 thread, 21 rounds, a quick check on the znver3 machine;
    and the limits beside ``MIN_LOADS_PER_OUTPUT``), and for NCHW, a channel multiplier, or
    channels that are no whole number of vectors (the pixels' offsets then differ)."""
    if target.family != "x86":
        return None
    if not isinstance(spec, DepthwiseSpec) or spec.data_format != "NHWC" or spec.multiplier != 1:
        return AlignedVariants({})
    lanes = target.lanes(accumulator_dtype(spec.dtype))
    vectors, vector_bytes = spec.in_channels // lanes, lanes * spec.itemsize
    tiling = tiling_of(main, spec, default_tiling(spec, target))
    group_blocks = group_blocks_of(main, spec, tiling)
    # A parallel task's blocks: a register tile's, times the group's where groups run in parallel.
    blocks_per_task = tiling.vectors_per_block * max(group_blocks, 1)
    if (spec.in_channels % lanes or vector_bytes <= ALIGNED_OFFSET_STEP_BYTES
            or ChannelBlocks.count_for(vectors, blocks_per_task) > MAX_ALIGNED_BLOCKS_RATIO * vectors
            or int(np.prod(spec.output_shape)) < MIN_ALIGNED_OUTPUTS
            or int(np.prod(spec.input_shape)) * spec.itemsize > MAX_ALIGNED_INPUT_BYTES
            or _loads_per_output(spec, tiling) < MIN_LOADS_PER_OUTPUT
            or (not group_blocks and tiling.tile_rows > 1 and spec.strides[0] == 1)
            or (group_blocks and tiling.block * spec.itemsize % CACHE_LINE_BYTES)):
        return AlignedVariants({})
    variants = {}
    for offset in range(ALIGNED_OFFSET_STEP_BYTES, vector_bytes, ALIGNED_OFFSET_STEP_BYTES):
        blocks = ChannelBlocks.for_tile(lanes, offset // spec.itemsize, spec.in_channels, blocks_per_task,
                                        shared_lines_first=bool(group_blocks))
        variants[offset] = (blocks, functools.partial(_schedule_variant, spec, blocks, tiling, group_blocks))
    # Every offset has as many blocks per pixel: one limit serves them all.
    limit = blocks.max_threads(spec.batch, blocks_per_task) if group_blocks else None
    return AlignedVariants(variants, limit)


def _schedule_variant(spec: DepthwiseSpec, blocks: ChannelBlocks, tiling: CpuTiling, group_blocks: int):
    # The loop order `aligned_variants` decided: with row tiles in parallel no two threads write
    # one line of the output at the input's offset; with channel groups in parallel, none up to
    # the variants' `max_threads` (ops/channel_blocks.py).
    return schedule_nhwc(as_schedule(prim_func(spec, blocks)), spec, tiling, group_blocks=group_blocks)


def _loads_per_output(spec: DepthwiseSpec, tiling: CpuTiling) -> float:
    """Input vectors an NHWC register tile of `tiling` loads per output vector it computes."""
    (row_stride, col_stride), (row_dilation, col_dilation) = spec.strides, spec.dilations
    rows = input_span(tiling.tile_rows, row_stride, spec.filter_height, row_dilation)
    cols = input_span(tiling.tile_cols, col_stride, spec.filter_width, col_dilation)
    return rows * cols / (tiling.tile_rows * tiling.tile_cols)


def masked_loads_cheap(spec: Any, target: Any) -> bool:
    """Whether `target` loads a vector of `spec`'s dtype under a mask at about a load's cost:
    AVX2's ``vmaskmovps``/``vmaskmovpd`` (32- and 64-bit lanes) and AVX-512's k-masks, for
    16-bit lanes with AVX512BW (``vmovdqu16``; AVX2 has no 16-bit masked load, and LLVM would
    load lane by lane). Float16 NCHW on AVX-512 with masked windows took 0.64x the time with
    the copy on 14x14x384-s1, 0.67x on 7x7x960, 0.88x on 28x28x192-s2, 1.08x on 56x56x144-s1
    (1 thread, 41 interleaved rounds, quick checks)."""
    from tvm.target.codegen import target_has_features

    if spec.itemsize >= 4:
        return target.vector_bits >= 256
    return target.vector_bits >= 512 and target_has_features("avx512bw", target.tvm())


def apply(func: Any, spec: Any, target: Any, tunable: bool = False, hand_decisions: bool = False,
          dwc_passes: bool = True):
    """The x86 rule (see ``base.py``): None unless `target` is of the x86 family. NCHW windows
    are read from the input under masks (``cpu.schedule_nchw``) where masked loads are cheap and
    the kernel is compiled with dwc's TIR pipeline (`dwc_passes`), whose pass masks them;
    otherwise each plane is copied."""
    registers = vector_registers(target)
    masked = dwc_passes and masked_loads_cheap(spec, target)
    return (apply_cpu_rule(func, spec, target, "x86", default_tiling, tunable, hand_decisions, masked)
            or apply_separable_rule(func, spec, target, "x86", registers, tunable, hand_decisions, masked))
