"""What the x86 and ARM schedules share for the separable op: one fused kernel per call.

A MobileNet block (depthwise -> bias -> ReLU6 -> pointwise -> bias) run as two ops writes the
depthwise result to memory and reads it back. Here it never leaves the cache:

NHWC: row tiles (parallel, fused with batch) -> pixel tiles (columns of one row). For each pixel
tile the depthwise step is computed for all C*M channels into a small buffer (a register tile of
pixels x one channel vector at a time, the window unrolled, as the depthwise kernel does), then
the pointwise product consumes it: for each block of output channels, register tiles of pixels
x vectors of output channels walk the C*M channels, each step one broadcast per pixel and one
vector load of the pointwise filter per vector (the filter's ``[C*M, O]`` rows are contiguous
along O). A large filter is walked in chunks of channels whose rows stay in L1 while every
register tile of the pixel tile uses them; the sums wait in a small buffer between chunks. The
epilogue is applied as the sums are stored.

NCHW: (batch, row tile) in parallel -> chunks of channels: the chunk's depthwise results for the
row tile into a buffer (the window sums vectorized along columns, read from the input under
masks on x86 as in the depthwise kernel, elsewhere from a copy of each channel's padded rows)
-> register tiles of output channels x rows x column vectors summed over the chunk, one
broadcast of the pointwise filter per output channel and one vector load of the depthwise
result per row and column vector. The epilogue stores each row tile's real columns.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..ops.depthwise import sum_width
from ..ops.primfunc import (BLOCK_CONV, BLOCK_DEPTHWISE, BLOCK_EPILOGUE, BLOCK_PAD, BLOCK_POINTWISE,
                            accumulator_dtype)
from ..ops.separable import SeparableSpec
from .base import as_schedule, sums_in_registers
from ..tir_passes import INTERIOR_BLOCKS
from .cpu import (CpuTiling, TileSearch, accumulate_in_registers, filter_per_multiple, interior_column_blocks,
                  largest_divisor_at_most, padded_input, split_tile, vector_lanes_for, windows_from_input)

# The largest tiles the design space samples.
MAX_SAMPLED_PIXEL_ROWS = 4
MAX_SAMPLED_PIXEL_COLS = 8
MAX_SAMPLED_OUT_VECTORS = 6
MAX_SAMPLED_OUT_CHANNELS = 8


@dataclasses.dataclass(frozen=True)
class SeparableTiling:
    """The free parameters of the fused separable schedule.

    Attributes:
        lanes: vector lanes of the target for the accumulator dtype.
        tile_rows: output rows per tile (NHWC: of the pixel tile; NCHW: of the row tile).
        tile_cols: output columns per pixel tile (NHWC): its depthwise results are made together
            and feed every output-channel block.
        out_vectors: NHWC: vectors of output channels per register tile; NCHW: column vectors.
        out_channels: output channels per register tile (NCHW; NHWC's are its vectors).
        register_cols: NHWC: pixels (of one row of the pixel tile) per pointwise register tile.
        depthwise_cols: NHWC: pixels per depthwise register tile.
        channel_chunk: C*M channels summed per pass over the tile. NHWC: the pointwise filter's
            rows for one chunk and one output-channel block stay in L1 while every register tile
            of the pixel tile uses them; NCHW: the chunk's depthwise results for the row tile
            stay in L1 while every register tile uses them. The sums wait in a small buffer
            between chunks; C*M means one pass.
        register_rows: NCHW: rows per pointwise register tile.
    """

    lanes: int
    tile_rows: int
    tile_cols: int = 1
    out_vectors: int = 1
    out_channels: int = 1
    register_cols: int = 1
    depthwise_cols: int = 1
    channel_chunk: int = 1
    register_rows: int = 1


# A pointwise filter of up to this many bytes stays in L1 as it is: pixel tiles are register
# tiles and each sums all C*M channels at once. Larger filters are walked in chunks of channels
# whose rows (for one output-channel block) take about FILTER_CHUNK_BYTES, reused by every
# register tile of a pixel tile of one row of up to MAX_TILE_COLS columns.
SMALL_FILTER_BYTES = 24 * 1024
FILTER_CHUNK_BYTES = 12 * 1024
MAX_TILE_COLS = 16
MAX_REGISTER_COLS = 8
NCHW_TILE_PIXELS = 64
NCHW_MIN_TILE_ROWS = 2


def _fmas_per_load(broadcasts: int, loaded_vectors: int) -> tuple[float, int]:
    """How a pointwise register tile ranks: each channel step broadcasts `broadcasts` values and
    loads `loaded_vectors` vectors for broadcasts x vectors FMAs; the most FMAs per load first,
    then the larger tile."""
    return broadcasts * loaded_vectors / (broadcasts + loaded_vectors), broadcasts * loaded_vectors


def _register_tile(pixel_choices: list[int], vectors: int, accumulators: int) -> tuple[int, int]:
    """(pixels, output-channel vectors) of the NHWC pointwise register tile: at most
    `accumulators` sums, ranked by :func:`_fmas_per_load` (a broadcast per pixel, a filter vector
    per output-channel vector), then the more pixels (which the depthwise register tile shares)."""
    shapes = [(pixels, out_vectors) for pixels in pixel_choices for out_vectors in range(1, vectors + 1)
              if vectors % out_vectors == 0 and pixels * out_vectors <= accumulators]
    return max(shapes, key=lambda shape: (*_fmas_per_load(*shape), shape[0]))


def plan_separable_tiling(spec: SeparableSpec, lanes: int, registers: int) -> SeparableTiling:
    """Tiles for `spec` with `lanes`-wide vectors and `registers` vector registers, each
    dividing its loop exactly (no predicates in the hot loop).

    NHWC, measured on the MobileNetV2 blocks (1 thread, AVX2): a small pointwise filter (up to
    24 KB) is read from L1 by register tiles of up to three quarters of the registers
    (56x56x144->24: 4 pixels x 3 vectors, 1.17x faster than 2 x 3); a larger one is walked in
    chunks of about 12 KB over pixel tiles of a row, with register tiles of half the registers
    (14x14x576->96: 2 x 4 in 96-channel chunks 416 us, 2 x 6 544 us, 2 x 4 unchunked 626 us).
    NCHW: output channels x column vectors.
    """
    depthwise = spec.depthwise
    if spec.data_format == "NHWC":
        out_lanes = vector_lanes_for(spec.out_channels, lanes)
        vectors = spec.out_channels // out_lanes
        width = depthwise.out_width
        if spec.depthwise_channels * spec.out_channels * spec.itemsize <= SMALL_FILTER_BYTES:
            pixel_choices = [p for p in range(1, min(width, MAX_REGISTER_COLS) + 1) if width % p == 0]
            pixels, out_vectors = _register_tile(pixel_choices, vectors, registers * 3 // 4)
            return SeparableTiling(lanes, 1, pixels, out_vectors, 1, pixels, pixels, spec.depthwise_channels)
        tile_cols = largest_divisor_at_most(width, MAX_TILE_COLS)
        pixel_choices = [p for p in range(1, min(tile_cols, MAX_REGISTER_COLS) + 1) if tile_cols % p == 0]
        pixels, out_vectors = _register_tile(pixel_choices, vectors, registers // 2)
        chunk_rows = max(FILTER_CHUNK_BYTES // (out_vectors * out_lanes * spec.itemsize), 1)
        channel_chunk = largest_divisor_at_most(spec.depthwise_channels, chunk_rows)
        depthwise_cols = largest_divisor_at_most(tile_cols, 7 if registers >= 16 else 4)
        return SeparableTiling(lanes, 1, tile_cols, out_vectors, 1, pixels, depthwise_cols, channel_chunk)
    # NCHW: row tiles of at least 2 rows and 64 pixels (a 7x7 plane whole): each channel's
    # padded rows are copied once per tile, and the depthwise register tile shares input rows
    # between its output rows (1 thread, znver3, against one-row tiles: 14x14x384->64 0.65x,
    # 7x7x960->160 0.71x, 56x56x144->24 0.76x the time); register tiles of
    # output channels (broadcast filter values) x rows x column vectors (loaded results).
    width = sum_width(depthwise)
    lanes = vector_lanes_for(width, lanes)  # rows are whole vectors of 8: AVX-512 vectors of 16 may not fit
    column_vectors = width // lanes
    tile_rows = min((rows for rows in range(NCHW_MIN_TILE_ROWS, depthwise.out_height + 1)
                     if depthwise.out_height % rows == 0 and rows * width >= NCHW_TILE_PIXELS),
                    default=depthwise.out_height)
    shapes = [(channels, rows, vectors) for channels in range(1, registers + 1) if spec.out_channels % channels == 0
              for rows in range(1, tile_rows + 1) if tile_rows % rows == 0
              for vectors in range(1, column_vectors + 1) if column_vectors % vectors == 0
              and channels * rows * vectors <= registers * 3 // 4]
    # A broadcast filter value per output channel, a loaded result per row and column vector.
    out_channels, register_rows, out_vectors = max(shapes, key=lambda shape: _fmas_per_load(shape[0],
                                                                                         shape[1] * shape[2]))
    tile_bytes = tile_rows * width * spec.itemsize
    if spec.depthwise_channels * tile_bytes <= SMALL_FILTER_BYTES:
        channel_chunk = spec.depthwise_channels
    else:
        channel_chunk = largest_divisor_at_most(spec.depthwise_channels, max(FILTER_CHUNK_BYTES // tile_bytes, 1))
    return SeparableTiling(lanes, tile_rows, 1, out_vectors, out_channels, channel_chunk=channel_chunk,
                           register_rows=register_rows)


def schedule_separable_nhwc(sch, spec: SeparableSpec, tiling: SeparableTiling, search: TileSearch | None = None):
    """Row tiles in parallel -> pixel tiles (the depthwise step into a buffer) -> blocks of output
    channel vectors -> chunks of channels -> register tiles summed over the chunk. See the
    module's story."""
    depthwise = spec.depthwise
    multiplier = depthwise.multiplier
    sch.compute_inline(sch.get_sblock(BLOCK_PAD))
    conv, middle = sch.get_sblock(BLOCK_CONV), sch.get_sblock(BLOCK_DEPTHWISE)
    pointwise, epilogue = sch.get_sblock(BLOCK_POINTWISE), sch.get_sblock(BLOCK_EPILOGUE)
    filter_per_multiple(sch, conv, depthwise, "depthwise_filter")
    if multiplier > 1:  # the depthwise result per multiple, its channel vectors contiguous
        sch.transform_layout(middle, ("write", 0), lambda n, i, j, k: (n, i, j, k % multiplier, k // multiplier))

    batch, row, col, out_channel = sch.get_loops(epilogue)
    row_tile, row_in_tile = split_tile(sch, row, tiling.tile_rows, search, MAX_SAMPLED_PIXEL_ROWS)
    col_tile, col_in_tile = split_tile(sch, col, tiling.tile_cols, search, MAX_SAMPLED_PIXEL_COLS)
    register_block, register_col = split_tile(sch, col_in_tile, tiling.register_cols, search, MAX_SAMPLED_PIXEL_COLS)
    out_lanes = vector_lanes_for(spec.out_channels, tiling.lanes)
    out_vectors, out_lane = sch.split(out_channel, [None, out_lanes])
    out_block, out_vector = split_tile(sch, out_vectors, tiling.out_vectors, search, MAX_SAMPLED_OUT_VECTORS)
    sch.reorder(batch, row_tile, col_tile, out_block, row_in_tile, register_block, register_col, out_vector, out_lane)
    sch.parallel(sch.fuse(batch, row_tile))
    for loop in (register_col, out_vector):
        sch.unroll(loop)
    sch.vectorize(out_lane)

    # The pixel tile's sums for one output-channel block, chunk by chunk of channels; within a
    # chunk, each register tile's sums stay in registers while its channels are walked.
    sch.compute_at(pointwise, out_block, preserve_unit_loops=True)
    sums_in_registers(sch, pointwise)
    *_, tile_row, tile_col, sum_channel, channel = sch.get_loops(pointwise)
    sum_block, sum_col = sch.split(tile_col, [None, int(sch.get(register_col).extent)])
    sum_vector, sum_lane = sch.split(sum_channel, [None, out_lanes])
    chunk, chunk_channel = split_tile(sch, channel, tiling.channel_chunk, search, spec.depthwise_channels)
    sch.reorder(chunk, tile_row, sum_block, chunk_channel, sum_col, sum_vector, sum_lane)
    for loop in (sum_col, sum_vector):
        sch.unroll(loop)
    sch.vectorize(sum_lane)
    sch.decompose_reduction(pointwise, chunk)

    # The depthwise step of the pixel tile, all C*M channels, before its output-channel blocks.
    sch.compute_at(middle, col_tile, preserve_unit_loops=True)
    *_, tile_row, tile_col, channel = sch.get_loops(middle)
    lanes = vector_lanes_for(depthwise.in_channels, tiling.lanes)
    channel_vector, channel_lane, channel_multiple = sch.split(channel, [None, lanes, multiplier])
    col_block, block_col = split_tile(sch, tile_col, tiling.depthwise_cols, search, MAX_SAMPLED_PIXEL_COLS)
    sch.reorder(channel_vector, tile_row, col_block, block_col, channel_multiple, channel_lane)
    for loop in (block_col, channel_multiple):
        sch.unroll(loop)
    sch.vectorize(channel_lane)
    accumulate_in_registers(sch, conv, col_block, depthwise, CpuTiling(lanes, 1, 1), tile_loops=2,
                            multiplier=multiplier)
    return sch


def schedule_separable_nchw(sch, spec: SeparableSpec, tiling: SeparableTiling, search: TileSearch | None = None,
                            masked_windows: bool = False):
    """(batch, row tile) in parallel -> chunks of channels (their depthwise results into a
    buffer) -> register tiles of output channels x rows x column vectors, summed over the chunk.
    The pointwise sums drive the loops (their rows are whole vectors); the epilogue follows each
    row tile. See the module's story. With `masked_windows`, the depthwise windows are read from
    the input under masks rather than from a copy of the tile's padded rows, and the column
    blocks whose windows read no padding get plain loads (as in :func:`~.cpu.schedule_nchw`;
    znver3, 1 thread: 112x112x32-s1->16 0.72x the time, 56x56x144-s1->24 0.77x, 14x14 and 7x7
    blocks unchanged, ``benchmarks/results/separable-nchw-interior-*.md``)."""
    depthwise = spec.depthwise
    pad, conv, middle = sch.get_sblock(BLOCK_PAD), sch.get_sblock(BLOCK_CONV), sch.get_sblock(BLOCK_DEPTHWISE)
    pointwise, epilogue = sch.get_sblock(BLOCK_POINTWISE), sch.get_sblock(BLOCK_EPILOGUE)

    batch, out_channel, row, col, channel = sch.get_loops(pointwise)
    row_tile, row_in_tile = split_tile(sch, row, tiling.tile_rows, search, MAX_SAMPLED_PIXEL_ROWS)
    chunk, chunk_channel = split_tile(sch, channel, tiling.channel_chunk, search, spec.depthwise_channels)
    out_block, out_in_block = split_tile(sch, out_channel, tiling.out_channels, search, MAX_SAMPLED_OUT_CHANNELS)
    row_block, row_in_block = split_tile(sch, row_in_tile, tiling.register_rows, search, MAX_SAMPLED_PIXEL_ROWS)
    col_vectors, col_lane = sch.split(col, [None, tiling.lanes])
    col_block, col_vector = split_tile(sch, col_vectors, tiling.out_vectors, search, MAX_SAMPLED_OUT_VECTORS)
    sch.reorder(batch, row_tile, chunk, out_block, row_block, col_block, chunk_channel, out_in_block, row_in_block,
                col_vector, col_lane)
    tile = sch.fuse(batch, row_tile)
    sch.parallel(tile)
    for loop in (out_in_block, row_in_block, col_vector):
        sch.unroll(loop)
    sch.vectorize(col_lane)
    sums_in_registers(sch, pointwise)
    sch.decompose_reduction(pointwise, chunk)

    # The row tile's outputs, once every chunk is summed: the real columns of each row, one
    # vector a row (LLVM splits it into whole vector pieces). Split by the vector, a ragged row
    # (7, 14 or 28 columns) left a predicate that made TVM's vectorizer emit scalar code.
    sch.reverse_compute_at(epilogue, tile, preserve_unit_loops=True)
    sch.vectorize(sch.get_loops(epilogue)[-1])

    # The depthwise step of a chunk of channels, channel by channel, before its pointwise sums.
    sch.compute_at(middle, chunk, preserve_unit_loops=True)
    *_, middle_channel, tile_row, tile_col = sch.get_loops(middle)
    col_vectors, col_lane = sch.split(tile_col, [None, tiling.lanes])
    sch.reorder(middle_channel, col_vectors, tile_row, col_lane)
    sch.unroll(tile_row)
    sch.vectorize(col_lane)
    depthwise_tiling = CpuTiling(tiling.lanes, 1, tiling.tile_rows)
    accumulate_in_registers(sch, conv, col_vectors, depthwise, depthwise_tiling, tile_loops=1)
    from_input = windows_from_input(depthwise, masked_windows)
    if from_input and search is None:  # the column blocks whose windows read no padding, as in schedule_nchw
        sch.annotate(col_vectors, INTERIOR_BLOCKS, list(interior_column_blocks(depthwise, depthwise_tiling)))
    padded_input(sch, pad, middle_channel, depthwise, from_input)
    return sch


def apply_separable_rule(func: Any, spec: Any, target: Any, family: str, registers: int, tunable: bool,
                         hand_decisions: bool, masked_windows: bool = False):
    """The separable half of the x86 and ARM rules: the fused schedule with the hand tiling for
    `registers` vector registers (left to MetaSchedule around it when `tunable`), or None when
    `target` is not of `family` or `spec` is not a separable convolution."""
    if target.family != family or not isinstance(spec, SeparableSpec):
        return None
    tiling = plan_separable_tiling(spec, target.lanes(accumulator_dtype(spec.dtype)), registers)
    search = TileSearch(use_hand=hand_decisions) if tunable else None
    sch = as_schedule(func)
    if spec.data_format == "NHWC":
        return schedule_separable_nhwc(sch, spec, tiling, search)
    return schedule_separable_nchw(sch, spec, tiling, search, masked_windows)
