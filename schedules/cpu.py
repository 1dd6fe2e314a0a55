"""What the x86 and ARM schedules share: the CPU loop structure of depthwise convolution.

The x86 and ARM rules differ only in the numbers they pass here (vector lanes, how many vectors
make a channel block, how many output columns or rows a register tile holds). The structure:

NHWC: row tiles (parallel, fused with batch) -> channel blocks -> tiles of output columns (for
small planes groups of channel blocks in parallel -> row tiles -> the group's blocks -> column
tiles); the
register tile's accumulators (rows x columns x channel block) live in registers (a ``local``
buffer) while the filter window is walked, unrolled, with the channel vector innermost.
Padding is inlined as a bounds test, so no padded copy of the input is made; the lowering's
LoopPartition (toolchain.CPU_PASS_CONFIG) gives the tiles whose windows lie inside the input
loops of their own without the test. The epilogue
(bias, activation, cast) is applied to each register tile as it is stored.

NCHW: (batch, channel) planes in parallel -> tiles of rows -> vectors of output columns; each
tile's accumulators (rows x vectors) in registers, the window unrolled around them. Where the
target has masked vector loads (x86), the windows are read from the input itself, the padding
columns masked off each load, strided columns picked from contiguous loads by a permute
(``tir_passes.masked_select_loads``), and the column blocks whose windows read no padding
column loaded plainly, in a loop of their own; elsewhere each plane's padded input is copied
once into a small buffer first (strided columns split by parity), so no bounds test is left in
the loop.
"""

from __future__ import annotations

import dataclasses

from typing import Any

import numpy as np

from ..ops.depthwise import NCHW_SUM_WIDTH_MULTIPLE, DepthwiseSpec, sum_width
from ..ops.primfunc import BLOCK_CONV, BLOCK_EPILOGUE, BLOCK_PAD
from ..tir_passes import INTERIOR_BLOCKS, MAX_SHUFFLED_STRIDE
from .base import as_schedule, read_index, sums_in_registers

# Beyond this many window taps the window's row loop stays a loop (code size, compile time).
MAX_UNROLLED_TAPS = 25


@dataclasses.dataclass(frozen=True)
class CpuTiling:
    """The free parameters of the CPU schedule.

    Attributes:
        vector_lanes: lanes of the innermost vectorized loop (channels for NHWC, columns for NCHW).
        vectors_per_block: vectors side by side along that axis in one register tile.
        tile_rows: output rows in one register tile.
        tile_cols: output columns in one register tile (NHWC only: NCHW's columns are the vectors).
        blocks_inside_columns: NHWC with row tiles in parallel only: each tile of columns runs
            every channel block in turn (row tiles -> column tiles -> channel blocks), rather than
            each channel block every column tile (see :func:`schedule_nhwc`).
    """

    vector_lanes: int
    vectors_per_block: int
    tile_rows: int
    tile_cols: int = 1
    blocks_inside_columns: bool = False

    @property
    def block(self) -> int:
        """Elements along the vectorized axis handled per tile."""
        return self.vector_lanes * self.vectors_per_block


# The largest register tiles the design space samples (rows, columns, vectors per channel block).
MAX_SAMPLED_ROWS = 4
MAX_SAMPLED_COLS = 8
MAX_SAMPLED_VECTORS = 4
MAX_SAMPLED_NCHW_ROWS = 8


@dataclasses.dataclass(frozen=True)
class TileSearch:
    """The register tiling left to MetaSchedule: each tile a ``sample_perfect_tile`` decision
    on the loop it splits, so the search's tile-size mutator explores it.

    Attributes:
        use_hand: fix every decision to the hand tiling's value (the hand schedule as a point of
            the space, whose trace seeds the search).
    """

    use_hand: bool = False

    def split(self, sch, loop, hand_inner: int, largest_inner: int):
        """Split `loop` into (outer, inner), the inner extent an exact divisor sampled up to
        `largest_inner` (or `hand_inner`, if larger)."""
        extent = int(sch.get(loop).extent)
        decision = [extent // hand_inner, hand_inner] if self.use_hand else None
        factors = sch.sample_perfect_tile(loop, n=2, max_innermost_factor=max(largest_inner, hand_inner),
                                          decision=decision)
        return sch.split(loop, factors)


def largest_divisor_at_most(extent: int, limit: int) -> int:
    """The largest divisor of `extent` that is <= `limit`."""
    return max(d for d in range(1, min(extent, limit) + 1) if extent % d == 0)


def vector_lanes_for(extent: int, lanes: int) -> int:
    """The widest power of two <= `lanes` that divides `extent` (1 when `extent` is odd)."""
    width = lanes
    while width > 1 and extent % width:
        width //= 2
    return width


def tile_for(extent: int, preferred: int, smallest: int) -> int:
    """A tile of `extent` near `preferred` that divides it, else the best divisor below."""
    for tile in range(preferred, smallest - 1, -1):
        if extent % tile == 0:
            return tile
    return largest_divisor_at_most(extent, preferred)


def plan_tiling(spec: DepthwiseSpec, lanes: int, vectors_per_block: int,
                tile_shapes: tuple[tuple[int, int], ...]) -> CpuTiling:
    """Tiling for `spec` with `lanes`-wide vectors, every loop dividing the output exactly.

    `tile_shapes` lists register tiles ``(rows, cols)`` by preference; the first that divides
    the output is taken (for NCHW only its rows count: columns are the vectors). Exact division
    keeps loops free of bounds predicates, which would stop vectorization.
    """
    # NCHW sums cover each row rounded up to whole vectors (ops/depthwise.py).
    vector_extent = spec.in_channels if spec.data_format == "NHWC" else sum_width(spec)
    vector_lanes = vector_lanes_for(vector_extent, lanes)
    vectors = largest_divisor_at_most(vector_extent // vector_lanes, vectors_per_block)
    if spec.data_format == "NCHW":
        rows = largest_divisor_at_most(spec.out_height, max(r for r, _ in tile_shapes))
        return CpuTiling(vector_lanes, vectors, rows, 1)
    for rows, cols in tile_shapes:
        if spec.out_height % rows == 0 and spec.out_width % cols == 0:
            return CpuTiling(vector_lanes, vectors, rows, cols)
    widest = max(cols for _, cols in tile_shapes)
    return CpuTiling(vector_lanes, vectors, 1, tile_for(spec.out_width, widest, 1))


def _unroll_window(sch, window_row, window_col, spec: DepthwiseSpec) -> None:
    sch.unroll(window_col)
    if spec.filter_height * spec.filter_width <= MAX_UNROLLED_TAPS:
        sch.unroll(window_row)


def accumulate_in_registers(sch, conv, tile_loop, spec: DepthwiseSpec, tiling: CpuTiling, tile_loops: int,
                             multiplier: int = 1) -> None:
    """The register tile under `tile_loop`: its sums in a ``local`` buffer, the filter window
    outermost and unrolled around them, the vector lanes innermost.

    Below `tile_loop`, conv's loops end with `tile_loops` tile axes (rows, and columns for
    NHWC), the vectorized axis, and the two window axes.
    """
    sch.compute_at(conv, tile_loop, preserve_unit_loops=True)
    sums_in_registers(sch, conv)
    *tile_axes, vector_axis, window_row, window_col = sch.get_loops(conv)[-(tile_loops + 3):]
    acc_vector, acc_lane, acc_multiple = sch.split(vector_axis, [None, tiling.vector_lanes, multiplier])
    sch.reorder(window_row, window_col, *tile_axes, acc_vector, acc_multiple, acc_lane)
    for loop in (*tile_axes, acc_vector, acc_multiple):
        sch.unroll(loop)
    sch.vectorize(acc_lane)
    _unroll_window(sch, window_row, window_col, spec)
    sch.decompose_reduction(conv, window_row)


def filter_per_multiple(sch, conv, spec: DepthwiseSpec, filter_name: str = "filter") -> None:
    """Make the filter taps of one multiple contiguous over channels, as the vectors read them.

    Output channel k = c * M + q reads input channel c. Vectors run over c for one q at a time,
    so input loads stay contiguous; the filter (in any filter format) is relaid once per call as
    [KH, KW, M, C] and, for M > 1, the register accumulators as [..., M, C], so taps and sums are
    contiguous vectors too. Only the final store interleaves the multiples (mult2-28x28x96:
    305 us -> 66 us, one thread). A TF filter with M = 1 already is [KH, KW, C] and is read as it is.
    """
    multiplier = spec.multiplier
    if multiplier > 1 or spec.filter_format != "HWCM":
        filter_copy = sch.cache_read(conv, read_index(sch, conv, filter_name), "global")
        sch.transform_layout(filter_copy, ("write", 0), spec.filter_index_to_hwmc())
    if multiplier > 1:
        sch.transform_layout(conv, ("write", 0), lambda n, i, j, k: (n, i, j, k % multiplier, k // multiplier))


def split_tile(sch, loop, inner: int, search: TileSearch | None, largest_inner: int):
    """(outer, inner) loops of `loop`: `inner` fixed, or sampled by `search`."""
    if search is None:
        return sch.split(loop, [None, inner])
    return search.split(sch, loop, inner, largest_inner)


# Channel blocks go outermost (in parallel, rows inside) for input planes up to this many
# pixels (28x28), given at least CHANNEL_OUTER_MIN_TASKS parallel tasks per call.
CHANNEL_OUTER_MAX_PLANE = 28 * 28
CHANNEL_OUTER_MIN_TASKS = 8
# At strides other than 1, a parallel task takes up to this many neighbouring blocks (64 channels
# of float32): see `channel_group_blocks`.
MAX_STRIDED_GROUP_BLOCKS = 4
L2_BYTES = 2 << 20  # a core's L2 on the machines measured
CHANNEL_OUTER_MAX_INPUT_BYTES = L2_BYTES // 2  # the whole input (all images) within half of it
CACHE_LINE_BYTES = 64
# Where a channel block is less than a cache line (AVX2), a parallel task's group of blocks
# spans at least this many lines (`group_size`).
MIN_GROUP_LINES_OF_HALF_BLOCKS = 2


def channel_group_blocks(spec: DepthwiseSpec, tiling: CpuTiling) -> int:
    """How many neighbouring channel blocks one parallel task of an NHWC schedule takes, each
    task over all rows (channel groups outermost, in parallel); 0 where row tiles run in parallel
    over all channel blocks instead.

    TVM's LoopPartition splits the border row tiles off the loop they are in, to free the
    others of the padding test; when that loop is the parallel one, the first and the last row
    tile run on one thread after the parallel part. A 14x14 or 7x7 output has 7 row tiles, and
    1 or 2 of them then run alone. With channel groups outermost the row loop is inside each
    parallel task, and the split rows with it; one group's plane (a 28x28 input by 16 channels is
    50 KB) also stays in L1/L2 while its rows are walked, where a row tile across all channels
    did not. Measured in ``benchmarks/results/loop-order-20261201-1453.md`` (21 rounds): gains at
    stride 1 on planes up to 28x28, one block a task. Larger planes gain nothing (56x56x144,
    112x112x32 lose, the latter with 2 blocks to share out: see `CHANNEL_OUTER_MIN_TASKS`,
    batches counted).

    At stride 2 a task of one block lost on 14x14x576-s2 (1.15-1.31x the time at 1 thread), each
    task walking one line of every pixel it read. A task of 3 or 4 neighbouring blocks reads
    192-256 contiguous bytes a pixel. In ``benchmarks/results/loop-order-20261202-0208.md`` (11
    rounds, each call's output at 6 places; groups against row tiles in parallel at 1 / 2
    threads, on an aligned input): 14x14x576-s2 with 4 blocks a task (9 tasks) 0.84x / 0.85x,
    and 28x28x192-s2, whose 12 blocks leave fewer than `CHANNEL_OUTER_MIN_TASKS` tasks with more
    than one a task, 0.95x / 0.86x with one. (Quick checks, 9 rounds: 14x14x576-s2 with 3 blocks a
    task, 12 tasks, 0.85-0.89x.) So at strides other than 1 a task takes the most blocks up to
    `MAX_STRIDED_GROUP_BLOCKS` that divide them and leave `CHANNEL_OUTER_MIN_TASKS` tasks; at
    stride 1, one (4 blocks a task measured the same there).

    The whole input must stay in L2 (`CHANNEL_OUTER_MAX_INPUT_BYTES`): a line that holds two
    blocks (an input off a vector boundary) is read once per block, and with each block over all
    rows the second read comes long after the first (a quick check of batch8-28x28x192-s1 on
    NumPy's input, 4.8 MB: 1.18-1.20x the time; on an aligned copy 0.88x).

    Decided on the hand tiling: a search that samples the register tile keeps this order, and
    the vectors of a group (the blocks it samples are made inside them).

    Threads then write neighbouring channels of each pixel, so each task's blocks
    (:func:`group_size`) and each pixel's channels must be whole cache lines of an output on a
    line boundary: where one line held
    the end of one thread's part and the start of the other's, for every pixel, the line moved
    between the cores at each store (in a quick check, 7x7x960 with its output 16 bytes past a
    boundary took 2.7x the time at 2 threads). Kernels for inputs off a vector boundary place their
    output at the input's offset: they take their ``main``'s order as given (``schedule_nhwc``'s
    `group_blocks`); those that run channel groups in parallel start each pixel's blocks at
    the last aligned one, so that the blocks whose lines are shared fall to one thread
    (``ops/channel_blocks.py``).
    """
    return group_size(spec, tiling) if channel_groups_allowed(spec, tiling) else 0


def channel_groups_allowed(spec: DepthwiseSpec, tiling: CpuTiling) -> bool:
    """Whether channel groups may run in parallel for `spec` with `tiling` (see
    :func:`channel_group_blocks`): a plane up to `CHANNEL_OUTER_MAX_PLANE`, the input within
    `CHANNEL_OUTER_MAX_INPUT_BYTES`, a pixel's channels of whole cache lines (and a group's:
    :func:`group_size`)."""
    return (spec.in_height * spec.in_width <= CHANNEL_OUTER_MAX_PLANE
            and int(np.prod(spec.input_shape)) * spec.itemsize <= CHANNEL_OUTER_MAX_INPUT_BYTES
            and spec.out_channels * spec.itemsize % CACHE_LINE_BYTES == 0)


def group_size(spec: DepthwiseSpec, tiling: CpuTiling) -> int:
    """The channel blocks of one parallel task where `spec` runs channel groups in parallel
    (:func:`channel_group_blocks`, whatever its plane): a group of whole cache lines (so that no
    two threads write one line) that divides the blocks and leaves `CHANNEL_OUTER_MIN_TASKS`
    tasks; at stride 1 with blocks of whole lines (AVX-512) one block, else the most up to
    `MAX_STRIDED_GROUP_BLOCKS`. 0 where none does.

    AVX2's blocks are half a line, and a group takes at least `MIN_GROUP_LINES_OF_HALF_BLOCKS`
    lines: in quick checks on the 2-core znver3 machine (11 rounds, the kernels alone, against
    row tiles in parallel at 1 / 2 threads) groups of 2 blocks took 0.96-1.27x / 0.70-1.10x the
    time on the 14x14 and 7x7 layers, and 28x28x192-s1 1.35x / 1.39x (its 24 blocks leave too
    few tasks of 4). Groups of 4, in ``benchmarks/results/loop-order-20261203-1518.md`` (15
    rounds, whole calls): on aligned inputs 0.86-0.92x / 0.68-0.84x the time of row tiles in
    parallel on 14x14x384-s1, 14x14x576-s1 and -s2 and 7x7x960, on NumPy's 0.93-1.06x /
    0.68-0.99x; 2-thread speed-ups 1.08-1.71x against 0.94-1.34x for row tiles."""
    blocks = spec.in_channels // tiling.block
    block_bytes = tiling.block * spec.itemsize
    whole = block_bytes % CACHE_LINE_BYTES == 0
    least = CACHE_LINE_BYTES * (1 if whole else MIN_GROUP_LINES_OF_HALF_BLOCKS)
    fitting = [size for size in range(1, MAX_STRIDED_GROUP_BLOCKS + 1)
               if size * block_bytes % CACHE_LINE_BYTES == 0 and size * block_bytes >= least and blocks % size == 0
               and spec.batch * blocks // size >= CHANNEL_OUTER_MIN_TASKS]
    if not fitting:
        return 0
    return min(fitting) if spec.strides == (1, 1) and whole else max(fitting)


def schedule_nhwc(sch, spec: DepthwiseSpec, tiling: CpuTiling, search: TileSearch | None = None,
                  group_blocks: int | None = None):
    """Row tiles in parallel -> channel blocks -> column tiles, or for small planes groups of
    `group_blocks` channel blocks in parallel -> row tiles -> the group's blocks -> column tiles
    (:func:`channel_group_blocks` unless `group_blocks` says, 0 for row tiles in parallel);
    accumulators in registers.

    With row tiles in parallel and ``tiling.blocks_inside_columns``: row tiles -> column tiles
    -> channel blocks. A row tile's channel block sweeps the tile's input rows, and neighbouring
    blocks share cache lines (two AVX2 vectors a line); where one block's sweep of those lines
    passes what L1 keeps, the next block reads them again from L2 or L3. With the blocks inside
    the column tiles, a tile's pixels are read for all their channels while they are in L1
    (``x86.default_tiling`` says where).

    With `search`, the register tile (rows, columns, vectors per block) is sampled around `tiling`.
    """
    sch.compute_inline(sch.get_sblock(BLOCK_PAD))
    conv, epilogue = sch.get_sblock(BLOCK_CONV), sch.get_sblock(BLOCK_EPILOGUE)
    multiplier = spec.multiplier
    filter_per_multiple(sch, conv, spec)

    batch, row, col, channel = sch.get_loops(epilogue)
    row_tile, row_in_tile = split_tile(sch, row, tiling.tile_rows, search, MAX_SAMPLED_ROWS)
    channel_vectors, channel_lane, channel_multiple = sch.split(channel, [None, tiling.vector_lanes, multiplier])
    if group_blocks is None:
        group_blocks = channel_group_blocks(spec, tiling)
    if group_blocks > 1:
        # The groups' vectors are fixed before a search samples the blocks inside them, so that
        # every tile it samples (or a mutated trace replays) divides a group exactly.
        group, channel_vectors = sch.split(channel_vectors, [None, group_blocks * tiling.vectors_per_block])
    channel_block, channel_vector = split_tile(sch, channel_vectors, tiling.vectors_per_block, search,
                                                MAX_SAMPLED_VECTORS)
    col_tile, col_in_tile = split_tile(sch, col, tiling.tile_cols, search, MAX_SAMPLED_COLS)
    if group_blocks > 1:
        outer = [group, row_tile, channel_block, col_tile]
    elif group_blocks == 1:
        outer = [channel_block, row_tile, col_tile]
    elif tiling.blocks_inside_columns:
        outer = [row_tile, col_tile, channel_block]
    else:
        outer = [row_tile, channel_block, col_tile]
    sch.reorder(batch, *outer, row_in_tile, col_in_tile, channel_vector, channel_multiple, channel_lane)
    sch.parallel(sch.fuse(batch, outer[0]))
    for loop in (row_in_tile, col_in_tile, channel_vector, channel_multiple):
        sch.unroll(loop)
    sch.vectorize(channel_lane)

    accumulate_in_registers(sch, conv, outer[-1], spec, tiling, tile_loops=2, multiplier=multiplier)
    return sch


def tiling_of(sch, spec: DepthwiseSpec, hand: CpuTiling) -> CpuTiling:
    """The register tile an NHWC schedule `sch` of `spec` was made with: when it replays a
    record of dwc's space, its three sampled tiles (rows, vectors per block, columns: the order
    :func:`schedule_nhwc` samples them in); else `hand` (the hand schedule, or a record of
    MetaSchedule's generic space, which has no such tile)."""
    trace = sch.trace
    tiles = [[int(factor) for factor in trace.decisions[inst]] for inst in trace.insts
             if inst.kind.name == "SamplePerfectTile"]
    if spec.data_format != "NHWC" or len(tiles) != 3 or any(len(tile) != 2 for tile in tiles):
        return hand
    (_, rows), (_, vectors), (_, cols) = tiles
    return dataclasses.replace(hand, vectors_per_block=vectors, tile_rows=rows, tile_cols=cols)


def group_blocks_of(sch, spec: DepthwiseSpec, tiling: CpuTiling) -> int:
    """The channel blocks (of `tiling`, the register tile `sch` was made with: :func:`tiling_of`)
    one parallel task of the NHWC schedule `sch` of `spec` takes, as :func:`channel_group_blocks`
    counts them (0: row tiles run in parallel), read from its loops: a tuning record keeps the
    order it was searched in (dwc's space ran row tiles in parallel before channel groups did).
    Channel groups count only where :func:`channel_groups_allowed` and the parallel loop runs
    over no rows or columns, whole images' worth of tasks; any other schedule (a record of
    MetaSchedule's generic space, say) counts as row tiles in parallel."""
    import tvm_ffi
    from tvm import s_tir, tirx

    if not channel_groups_allowed(spec, tiling):
        return 0
    bindings = []
    tvm_ffi.structural_walk(sch.mod["main"].body, ((s_tir.SBlockRealize, lambda realize: bindings.append(
        realize.iter_values) if realize.block.name_hint == BLOCK_EPILOGUE else None),))
    if len(bindings) != 1 or len(bindings[0]) != 4:
        return 0
    parallel = sch.get(sch.get_loops(sch.get_sblock(BLOCK_EPILOGUE))[0])
    _, row, col, _ = bindings[0]

    def uses_parallel_loop(expr) -> bool:
        found = []
        tvm_ffi.structural_walk(expr, ((tirx.Var, lambda var: found.append(var)
                                        if var.same_as(parallel.loop_var) else None),))
        return bool(found)

    # One group an image: the fused loop is the batch's alone, over no channel block either.
    blocks, extent = spec.in_channels // tiling.block, int(parallel.extent)
    if (parallel.kind != tirx.ForKind.PARALLEL or uses_parallel_loop(row) or uses_parallel_loop(col)
            or extent % spec.batch or blocks % (extent // spec.batch)):
        return 0
    return blocks // (extent // spec.batch)


def schedule_nchw(sch, spec: DepthwiseSpec, tiling: CpuTiling, search: TileSearch | None = None,
                  masked_windows: bool = False):
    """Channel planes in parallel (small ones a few at a time: :func:`planes_per_copy`) -> row
    tiles -> column vectors; accumulators in registers.

    Each plane's zero-padded input is first copied into a small buffer (``pad`` computed per
    plane, L1/L2-resident), so the window loads are plain contiguous vector loads: the padding
    test, which along a vector of columns differs per lane, leaves the hot loop (56x56x144-s1:
    2473 -> 475 us, 14x14x384-s1: 295 -> 141 us, one thread, znver3: TVM makes a vector of such
    tests scalar). With a column stride of 2 the copy splits even and odd columns, so strided
    windows load contiguous vectors too.

    With `masked_windows` (a target whose masked vector loads cost what a load does) no copy is
    made (column strides up to ``MAX_SHUFFLED_STRIDE``): ``pad`` is inlined, its column test a
    ``Select`` that TVM keeps a vector, and each window row's vector is loaded from the input
    under the mask of its real columns, at a column stride of 2 as two contiguous masked loads and
    one permute, the first two taps of a row sharing their loads
    (:func:`~dwc_compiler.tir_passes.masked_select_loads`); the row test stays a
    test, which LoopPartition takes out of the interior row tiles. The copy had cost up to half of
    the small planes' time: without it 14x14x384-s1 took 0.56x the time, 7x7x960 0.50x,
    14x14x576-s2 0.51x, 28x28x192-s2 0.62x, 112x112x96-s2 0.66x, 56x56x144-s1 0.88x
    (``benchmarks/results/nchw-windows-20261201-1954.md``, 1 thread, 201 rounds). One layer
    loses: 56x56x144-s2, 1.12x (1.01-1.21x over four runs, for no reason found: 64x64 and 96x96
    planes at stride 2 gain, 0.89x and 0.60x in quick checks, and 112x112x96-s2 0.66x above).

    Every window load was masked, though most column blocks of a wide row read no padding; the
    column-block loop is marked with those that do not (:func:`interior_column_blocks`), and
    dwc's pass gives them a loop of their own with plain loads (``tir_passes._peeled_interior``).
    On the 2-core znver3 machine, whose masked loads cost more than plain ones, that made the
    masked windows slower than the plane copy on the widest planes (112x112x32-s1 1.43x,
    56x56x144-s1 1.26x, 11 rounds); with the interior peeled 112x112x32-s1 takes 0.53x the time,
    112x112x96-s2 0.63x, 56x56x144-s1 0.65x, 56x56x144-s2 0.82x
    (``benchmarks/results/nchw-interior-*.md``).
    With `search`, the register tile (rows, vectors per block) is sampled around `tiling`.
    """
    pad, conv, epilogue = sch.get_sblock(BLOCK_PAD), sch.get_sblock(BLOCK_CONV), sch.get_sblock(BLOCK_EPILOGUE)
    store = whole_vector_rows(sch, epilogue, spec)

    batch, channel, row, col = sch.get_loops(epilogue)
    row_tile, row_in_tile = split_tile(sch, row, tiling.tile_rows, search, MAX_SAMPLED_NCHW_ROWS)
    col_vectors, col_lane = sch.split(col, [None, tiling.vector_lanes])
    col_block, col_vector = split_tile(sch, col_vectors, tiling.vectors_per_block, search, MAX_SAMPLED_VECTORS)
    from_input = windows_from_input(spec, masked_windows)
    channel_group, channel_in_group = sch.split(channel, [None, 1 if from_input else planes_per_copy(spec)])
    sch.reorder(batch, channel_group, channel_in_group, row_tile, col_block, row_in_tile, col_vector, col_lane)
    plane = sch.fuse(batch, channel_group)
    sch.parallel(plane)
    sch.unroll(row_in_tile)
    sch.unroll(col_vector)
    sch.vectorize(col_lane)

    accumulate_in_registers(sch, conv, col_block, spec, tiling, tile_loops=1)
    if from_input and search is None:
        sch.annotate(col_block, INTERIOR_BLOCKS, list(interior_column_blocks(spec, tiling)))
    if store is not None:
        store_real_columns(sch, store, row_tile)
        # The epilogue's bias and activation move into the store, on the real columns only.
        sch.compute_inline(epilogue)
    padded_input(sch, pad, plane, spec, from_input)
    return sch


def interior_column_blocks(spec: DepthwiseSpec, tiling: CpuTiling) -> tuple[int, int]:
    """``(first, end)``: the NCHW column blocks of `tiling` (its vectors of a row's output
    columns) whose windows read only columns inside the input, none of the padding; an empty range
    where there are none (rows of one or two blocks).

    Where windows are read from the input under masks (:func:`windows_from_input`), dwc's pass
    gives these blocks a loop of their own with plain loads (``tir_passes._peeled_interior``; a
    range that is too wide only leaves the tests it cannot prove)."""
    col_stride, col_dilation = spec.strides[1], spec.dilations[1]
    block_cols = tiling.vector_lanes * tiling.vectors_per_block
    pad_left, blocks = spec.pads[2], -(-sum_width(spec) // block_cols)
    reach = (spec.filter_width - 1) * col_dilation + 1  # a window's columns, first to last

    def inside(block: int) -> bool:
        first_col = block * block_cols * col_stride
        last_col = ((block + 1) * block_cols - 1) * col_stride + reach - 1
        return first_col >= pad_left and last_col < pad_left + spec.in_width

    interior = [block for block in range(blocks) if inside(block)]
    return (interior[0], interior[-1] + 1) if interior else (0, 0)


def windows_from_input(spec: DepthwiseSpec, masked_windows: bool) -> bool:
    """Whether NCHW windows of `spec` are read from the input under masks (the rule allows it,
    `masked_windows`, and its column stride is one dwc's pass makes contiguous pieces of) rather
    than from a copy of the padded plane."""
    return masked_windows and spec.strides[1] <= MAX_SHUFFLED_STRIDE


def padded_input(sch, pad, loop, spec: DepthwiseSpec, from_input: bool) -> None:
    """The ``pad`` block of an NCHW schedule: inlined into the window sums (`from_input`, see
    :func:`windows_from_input`), else the padded input under `loop` copied (:func:`padded_plane`)."""
    if from_input:
        sch.compute_inline(pad)
    else:
        padded_plane(sch, pad, loop, spec)


def whole_vector_rows(sch, epilogue, spec: DepthwiseSpec):
    """For NCHW rows that are no whole number of vectors (7, 14, 28 columns): the `epilogue`
    block widened to whole vectors (:func:`~dwc_compiler.ops.depthwise.sum_width` columns, as
    the sums already are) into a small buffer, and a ``store`` block after it that copies the
    real columns to the output; returns that block (None when rows are whole vectors).

    Split by the vector, a ragged row leaves a predicate (``column < width``) on the vectorized
    loop, and TVM's vectorizer then makes the whole epilogue scalar: a scalar store, and for a
    fused activation two scalar ops, per output element (7x7x960 with ReLU6: 1.30x the plain
    kernel's time). Widened, the sums are whole vectors, and the store of a row is one vector
    of its real width, which LLVM splits into whole vector pieces. The epilogue's bias and
    activation belong in that store (the schedule inlines them there): applied to the widened
    row, the padding lane of each vector was dead, LLVM made that lane of the bound 6 poison,
    and no longer matched the minimum (a compare and a blend for each ``vminps``: 7x7x960 with
    ReLU6 1.11x the plain kernel, 1.06x as stored). On AVX-512, dwc's pass that makes such a
    store one masked store also computes it on the whole vector, clipping with x86's own min and
    max (``tir_passes._widened``), so that LLVM keeps the sums whole.
    """
    width, padded = spec.out_width, sum_width(spec)
    if spec.data_format != "NCHW" or padded == width:
        return None
    # sum_width rounds the row up to a multiple of NCHW_SUM_WIDTH_MULTIPLE: the padded domain.
    sch.pad_einsum(epilogue, [1, 1, 1, NCHW_SUM_WIDTH_MULTIPLE])
    sch.compute_inline(sch.get_sblock(f"{BLOCK_CONV}_pad"))
    return sch.get_sblock(f"{BLOCK_EPILOGUE}_pad")


def store_real_columns(sch, store, tile_loop) -> None:
    """The ``store`` block of :func:`whole_vector_rows` under `tile_loop`, after the tile's
    sums: each row's real columns copied as one vector (LLVM splits an odd width into whole
    vector pieces)."""
    sch.reverse_compute_at(store, tile_loop, preserve_unit_loops=True)
    *_, row, col = sch.get_loops(store)
    sch.unroll(row)
    sch.vectorize(col)


def planes_per_copy(spec: DepthwiseSpec) -> int:
    """Channel planes whose padded inputs are copied together, before their sums.

    A small plane's sums read its copy right after it is written, and a vector load that spans
    several pending stores waits for them to reach the cache; copying a few planes ahead hides
    that. Measured (1 thread, znver3, against one plane at a time): 14x14 planes 0.80-0.82x the
    time with 4 (0.75x at stride 2), 28x28 0.89x with 2; 7x7 planes 0.92-0.99x with 2 but
    1.07-1.19x with 4; 56x56 and larger no change."""
    top, bottom, left, right = spec.pads
    copy_bytes = (spec.in_height + top + bottom) * (spec.in_width + left + right) * np.dtype(spec.dtype).itemsize
    wanted = 2 if copy_bytes <= 512 else 4 if copy_bytes <= 2048 else 2 if copy_bytes <= 8192 else 1
    return largest_divisor_at_most(spec.out_channels, wanted)


def padded_plane(sch, pad, plane, spec: DepthwiseSpec) -> None:
    """The padded input of each plane (the part under the loop `plane`: the fused separable
    kernel copies the rows of one row tile) stored once per plane, before its tiles; for a column
    stride s > 1 laid out as [row, column % s, column // s] so that strided windows load
    contiguous vectors. The copy covers the columns the plane's sums reach (TVM shrinks it to
    them) and is left to LLVM's loop vectorizer, which handles the odd tail: 56x56x144-s1 333 vs
    490 us for a TVM-vectorized copy (1 thread, znver3). For stride 2 the column pairs inside the
    input get a loop of their own, free of the padding test (with the test in it, every element
    was a branch and a scalar copy: 56x56x144-s2 ~15k instructions per plane; 0.43x the time
    without), with the phases unrolled inside it: dwc's TIR pass (``dwc_compiler/tir_passes.py``)
    makes that loop vector loads and one permute per phase."""
    sch.compute_at(pad, plane, preserve_unit_loops=True)
    col_stride = spec.strides[1]
    if col_stride > 1:
        sch.transform_layout(pad, ("write", 0),
                             lambda n, c, row, col: (n, c, row, col % col_stride, col // col_stride),
                             pad_value=0.0)
    *_, group = sch.get_loops(pad)
    if col_stride > 1:
        group, phase = sch.split(group, [None, col_stride])
        sch.unroll(phase)
    # The column test is no `likely` (ops/depthwise.py), so TVM's LoopPartition leaves it; the
    # row test is the same along a row, and LLVM hoists it.
    _peel_padding_columns(sch, group, spec)


def _peel_padding_columns(sch, group_loop, spec: DepthwiseSpec) -> None:
    """Partition `group_loop` (groups of `stride` padded columns, from column 0) into the groups
    before, inside and after the input's columns."""
    col_stride = spec.strides[1]
    pad_left = spec.pads[2]
    extent = int(sch.get(group_loop).extent)
    first_inside = min(-(-pad_left // col_stride), extent)
    end_inside = max(min((pad_left + spec.in_width) // col_stride, extent), first_inside)
    factors = [size for size in (first_inside, end_inside - first_inside) if size > 0]
    if factors and factors != [extent]:
        sch.loop_partition(group_loop, factors)


def schedule_cpu(sch, spec: DepthwiseSpec, tiling: CpuTiling, search: TileSearch | None = None,
                 masked_windows: bool = False):
    """The CPU schedule for `spec`'s layout with `tiling` (sampled around it with `search`;
    `masked_windows`: see :func:`schedule_nchw`)."""
    if spec.data_format == "NHWC":
        return schedule_nhwc(sch, spec, tiling, search)
    return schedule_nchw(sch, spec, tiling, search, masked_windows)


def apply_cpu_rule(func: Any, spec: Any, target: Any, family: str, default_tiling, tunable: bool,
                   hand_decisions: bool, masked_windows: bool = False):
    """The body of the x86 and ARM rules: `default_tiling(spec, target)` applied to `func`
    (left to MetaSchedule around it when `tunable`), or None when `target` is not of `family`
    or `spec` is not a depthwise convolution."""
    if target.family != family or not isinstance(spec, DepthwiseSpec):
        return None
    search = TileSearch(use_hand=hand_decisions) if tunable else None
    return schedule_cpu(as_schedule(func), spec, default_tiling(spec, target), search, masked_windows)
