"""What the x86 and ARM schedules share: the CPU loop structure of depthwise convolution.

The x86 and ARM rules differ only in the numbers they pass here (vector lanes, how many vectors
make a channel block, how many output columns or rows a register tile holds). The structure:

NHWC: row tiles (parallel, fused with batch) -> channel blocks -> tiles of output columns; the
register tile's accumulators (rows x columns x channel block) live in registers (a ``local``
buffer) while the filter window is walked, unrolled, with the channel vector innermost.
Padding is inlined as a bounds test, so no padded copy of the input is made. The epilogue
(bias, activation, cast) is applied to each register tile as it is stored.

NCHW: (batch, channel) planes in parallel -> tiles of rows -> vectors of output columns; each
tile's accumulators (rows x vector) in registers, the window unrolled around them. Each plane's
padded input is copied once into a small buffer first, so no bounds test is left in the loop.
"""

from __future__ import annotations

import dataclasses

from typing import Any

from ..ops.depthwise import DepthwiseSpec, sum_width
from ..ops.primfunc import BLOCK_CONV, BLOCK_EPILOGUE, BLOCK_PAD
from .base import as_schedule, read_index

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
    """

    vector_lanes: int
    vectors_per_block: int
    tile_rows: int
    tile_cols: int = 1

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
    sch.set_scope(conv, 0, "local")
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


def schedule_nhwc(sch, spec: DepthwiseSpec, tiling: CpuTiling, search: TileSearch | None = None):
    """Row tiles in parallel -> channel blocks -> column tiles; accumulators in registers.

    With `search`, the register tile (rows, columns, vectors per block) is sampled around `tiling`.
    """
    sch.compute_inline(sch.get_sblock(BLOCK_PAD))
    conv, epilogue = sch.get_sblock(BLOCK_CONV), sch.get_sblock(BLOCK_EPILOGUE)
    multiplier = spec.multiplier
    filter_per_multiple(sch, conv, spec)

    batch, row, col, channel = sch.get_loops(epilogue)
    row_tile, row_in_tile = split_tile(sch, row, tiling.tile_rows, search, MAX_SAMPLED_ROWS)
    channel_vectors, channel_lane, channel_multiple = sch.split(channel, [None, tiling.vector_lanes, multiplier])
    channel_block, channel_vector = split_tile(sch, channel_vectors, tiling.vectors_per_block, search,
                                                MAX_SAMPLED_VECTORS)
    col_tile, col_in_tile = split_tile(sch, col, tiling.tile_cols, search, MAX_SAMPLED_COLS)
    sch.reorder(batch, row_tile, channel_block, col_tile, row_in_tile, col_in_tile, channel_vector,
                channel_multiple, channel_lane)
    sch.parallel(sch.fuse(batch, row_tile))
    for loop in (row_in_tile, col_in_tile, channel_vector, channel_multiple):
        sch.unroll(loop)
    sch.vectorize(channel_lane)

    accumulate_in_registers(sch, conv, col_tile, spec, tiling, tile_loops=2, multiplier=multiplier)
    return sch


def schedule_nchw(sch, spec: DepthwiseSpec, tiling: CpuTiling, search: TileSearch | None = None):
    """Channel planes in parallel -> row tiles -> column vectors; accumulators in registers.

    Each plane's zero-padded input is first copied into a small buffer (``pad`` computed per
    plane, L1/L2-resident), so the window loads are plain contiguous vector loads: the padding
    test, which along a vector of columns differs per lane, leaves the hot loop (56x56x144-s1:
    2473 -> 475 us, 14x14x384-s1: 295 -> 141 us, one thread, znver3). With a column stride of 2
    the copy splits even and odd columns, so strided windows load contiguous vectors too.
    With `search`, the register tile (rows, vectors per block) is sampled around `tiling`.
    """
    pad, conv, epilogue = sch.get_sblock(BLOCK_PAD), sch.get_sblock(BLOCK_CONV), sch.get_sblock(BLOCK_EPILOGUE)

    batch, channel, row, col = sch.get_loops(epilogue)
    row_tile, row_in_tile = split_tile(sch, row, tiling.tile_rows, search, MAX_SAMPLED_NCHW_ROWS)
    col_vectors, col_lane = sch.split(col, [None, tiling.vector_lanes])
    col_block, col_vector = split_tile(sch, col_vectors, tiling.vectors_per_block, search, MAX_SAMPLED_VECTORS)
    sch.reorder(batch, channel, row_tile, col_block, row_in_tile, col_vector, col_lane)
    plane = sch.fuse(batch, channel)
    sch.parallel(plane)
    sch.unroll(row_in_tile)
    sch.unroll(col_vector)
    sch.vectorize(col_lane)

    accumulate_in_registers(sch, conv, col_block, spec, tiling, tile_loops=1)
    padded_plane(sch, pad, plane, spec)
    return sch


def padded_plane(sch, pad, plane, spec: DepthwiseSpec) -> None:
    """The padded input of each plane (the part under the loop `plane`: the fused separable
    kernel copies the rows of one row tile) stored once per plane, before its tiles; for a column
    stride s > 1 laid out as [row, column % s, column // s] so that strided windows load
    contiguous vectors. The copy covers the columns the plane's sums reach (TVM shrinks it to
    them), which need not be a whole number of vectors; it is left to LLVM's loop vectorizer,
    which handles the odd tail, and for stride 2 reads the input as an interleaved pair (one
    wide load, two shuffles) when the phases are the unrolled innermost loop. Measured against
    TVM-vectorized copies (1 thread, znver3): 56x56x144-s1 333 vs 490 us; stride 2, paired:
    112x112x96 0.70x, 28x28x192 0.72x, 14x14x576 0.90x, 56x56x144 1.26x the time."""
    sch.compute_at(pad, plane, preserve_unit_loops=True)
    col_stride = spec.strides[1]
    if col_stride > 1:
        sch.transform_layout(pad, ("write", 0),
                             lambda n, c, row, col: (n, c, row, col % col_stride, col // col_stride),
                             pad_value=0.0)
        *_, pad_col = sch.get_loops(pad)
        half, phase = sch.split(pad_col, [None, col_stride])
        sch.unroll(phase)
        # The last column pair may be half outside the copied region: loop partitioning
        # peels it off, so the loop LLVM vectorizes has no condition in it.
        sch.annotate(half, "pragma_loop_partition_hint", True)


def schedule_cpu(sch, spec: DepthwiseSpec, tiling: CpuTiling, search: TileSearch | None = None):
    """The CPU schedule for `spec`'s layout with `tiling` (sampled around it with `search`)."""
    if spec.data_format == "NHWC":
        return schedule_nhwc(sch, spec, tiling, search)
    return schedule_nchw(sch, spec, tiling, search)


def apply_cpu_rule(func: Any, spec: Any, target: Any, family: str, default_tiling, tunable: bool,
                   hand_decisions: bool):
    """The body of the x86 and ARM rules: `default_tiling(spec, target)` applied to `func`
    (left to MetaSchedule around it when `tunable`), or None when `target` is not of `family`
    or `spec` is not a depthwise convolution."""
    if target.family != family or not isinstance(spec, DepthwiseSpec):
        return None
    search = TileSearch(use_hand=hand_decisions) if tunable else None
    return schedule_cpu(as_schedule(func), spec, default_tiling(spec, target), search)
