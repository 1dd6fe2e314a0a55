"""CUDA schedule rule for depthwise convolution (NHWC and NCHW).

The story: each thread block owns a tile of output pixels and a block of the contiguous axis
(channels for NHWC, columns for NCHW). The block first stages the zero-padded input window of
its tile in shared memory, cooperatively and with 16-byte loads where the channels allow
(padding is the bounds test of that load: no padded copy exists), so every input element is
read from global memory once per block. Then each thread accumulates a small register tile
(a few output pixels by one 16-byte vector of channels, or a few columns in NCHW) over the
unrolled filter window, and writes it back with vector stores. Tiles are sized to divide the
output exactly and to fit the target's shared memory. The epilogue (bias, activation, cast) is
applied in registers as each thread stores its outputs.
"""

from __future__ import annotations

import dataclasses

from typing import Any

from ..ops.depthwise import DepthwiseSpec, input_span
from ..ops.primfunc import BLOCK_CONV, BLOCK_DEPTHWISE, BLOCK_EPILOGUE, BLOCK_PAD, BLOCK_POINTWISE
from ..ops.separable import SeparableSpec
from .base import as_schedule
from .cpu import largest_divisor_at_most, vector_lanes_for

NAME = "hand:cuda"

BYTES_PER_VECTOR = 16
MAX_THREADS_PER_BLOCK = 256
WARP = 32


@dataclasses.dataclass(frozen=True)
class CudaTiling:
    """Free parameters of the CUDA schedule.

    Attributes:
        vector: elements per thread along the contiguous axis (one 16-byte access where possible).
        threads_x: threads along the contiguous axis (channel vectors, or NCHW column groups).
        threads_y: threads along output columns (NHWC) or rows (NCHW).
        per_thread: output columns (NHWC) or rows (NCHW) each thread accumulates in registers.
        rows: output rows per block (NHWC).
    """

    vector: int
    threads_x: int
    threads_y: int
    per_thread: int
    rows: int = 1


def _staged_bytes(spec: DepthwiseSpec, out_rows: int, out_cols: int, channels: int) -> int:
    rows = input_span(out_rows, spec.strides[0], spec.filter_height, spec.dilations[0])
    cols = input_span(out_cols, spec.strides[1], spec.filter_width, spec.dilations[1])
    return rows * cols * channels * spec.itemsize


def _staged_channels(spec: DepthwiseSpec, tiling: CudaTiling) -> int:
    """Input channels a block of `tiling.threads_x * tiling.vector` output channels reads."""
    block_channels = tiling.threads_x * tiling.vector
    if block_channels % spec.multiplier == 0:
        return block_channels // spec.multiplier
    return 1  # a block's output channels straddle input channels: stage one channel column at a time


def plan_tiling(spec: DepthwiseSpec, target) -> CudaTiling:
    """Tiles that divide the output exactly and whose staged input fits shared memory."""
    shared_limit = int(target.tvm_target.get("max_shared_memory_per_block", 49152))
    lanes = BYTES_PER_VECTOR // spec.itemsize
    if spec.data_format == "NHWC":
        vector = vector_lanes_for(spec.out_channels, lanes)
        threads_x = largest_divisor_at_most(spec.out_channels // vector, WARP)
        channels_in = max(threads_x * vector // spec.multiplier, 1)
        for per_thread in (4, 2, 1):
            if spec.out_width % per_thread:
                continue
            threads_y = largest_divisor_at_most(spec.out_width // per_thread, MAX_THREADS_PER_BLOCK // threads_x)
            while threads_y > 1 and _staged_bytes(spec, 1, threads_y * per_thread, channels_in) > shared_limit:
                threads_y = largest_divisor_at_most(spec.out_width // per_thread, threads_y - 1)
            if _staged_bytes(spec, 1, threads_y * per_thread, channels_in) <= shared_limit:
                return CudaTiling(vector, threads_x, threads_y, per_thread)
        return CudaTiling(vector, threads_x, 1, 1)
    threads_x = largest_divisor_at_most(spec.out_width, WARP)
    for per_thread in (4, 2, 1):
        if spec.out_height % per_thread:
            continue
        threads_y = largest_divisor_at_most(spec.out_height // per_thread, MAX_THREADS_PER_BLOCK // threads_x)
        while threads_y > 1 and _staged_bytes(spec, threads_y * per_thread, threads_x, 1) > shared_limit:
            threads_y = largest_divisor_at_most(spec.out_height // per_thread, threads_y - 1)
        if _staged_bytes(spec, threads_y * per_thread, threads_x, 1) <= shared_limit:
            return CudaTiling(1, threads_x, threads_y, per_thread)
    return CudaTiling(1, threads_x, 1, 1)


def _stage_input_in_shared(sch, block_loop, tiling: CudaTiling, load_vector: int) -> None:
    """The padded input window of the block, loaded cooperatively into shared memory.

    Pixels x channel groups are spread over the block's threads; each thread loads
    `load_vector` consecutive elements (one 16-byte load where the channels allow). The bounds
    test of the padding depends on the pixel only, so it stays outside the vector.
    """
    pad = sch.get_sblock(BLOCK_PAD)
    sch.compute_at(pad, block_loop, preserve_unit_loops=True)
    sch.set_scope(pad, 0, "shared")
    *outer, innermost = sch.get_loops(pad)[1:]  # every loop under the block's
    groups, lane = sch.split(innermost, [None, load_vector])
    _, thread_y, thread_x = sch.split(sch.fuse(*outer, groups), [None, tiling.threads_y, tiling.threads_x])
    sch.bind(thread_y, "threadIdx.y")
    sch.bind(thread_x, "threadIdx.x")
    sch.vectorize(lane)


def _accumulate_in_registers(sch, thread_loop) -> None:
    """Each thread's outputs summed in registers over the unrolled filter window."""
    conv = sch.get_sblock(BLOCK_CONV)
    sch.compute_at(conv, thread_loop, preserve_unit_loops=True)
    sch.set_scope(conv, 0, "local")
    loops = sch.get_loops(conv)
    spatial, window_row, window_col = loops[-6:-2], loops[-2], loops[-1]
    sch.reorder(window_row, window_col, *spatial)
    for loop in (window_row, window_col, *spatial):
        sch.unroll(loop)
    sch.decompose_reduction(conv, window_row)


def schedule_nhwc(sch, spec: DepthwiseSpec, tiling: CudaTiling):
    """Blocks over (batch, row, column tile, channel block); threads over columns x channel vectors."""
    epilogue = sch.get_sblock(BLOCK_EPILOGUE)
    batch, row, col, channel = sch.get_loops(epilogue)
    col_block, col_thread, col_in_thread = sch.split(col, [None, tiling.threads_y, tiling.per_thread])
    channel_block, channel_thread, channel_lane = sch.split(channel, [None, tiling.threads_x, tiling.vector])
    sch.reorder(batch, row, col_block, channel_block, col_thread, channel_thread, col_in_thread, channel_lane)
    block = sch.fuse(batch, row, col_block, channel_block)
    sch.bind(block, "blockIdx.x")
    sch.bind(col_thread, "threadIdx.y")
    sch.bind(channel_thread, "threadIdx.x")
    sch.unroll(col_in_thread)
    sch.vectorize(channel_lane)
    _accumulate_in_registers(sch, channel_thread)
    staged_channels = _staged_channels(spec, tiling)
    _stage_input_in_shared(sch, block, tiling, vector_lanes_for(staged_channels, BYTES_PER_VECTOR // spec.itemsize))
    return sch


def schedule_nchw(sch, spec: DepthwiseSpec, tiling: CudaTiling):
    """Blocks over (batch, channel, row tile, column block); threads over rows x columns."""
    epilogue = sch.get_sblock(BLOCK_EPILOGUE)
    batch, channel, row, col = sch.get_loops(epilogue)
    row_block, row_thread, row_in_thread = sch.split(row, [None, tiling.threads_y, tiling.per_thread])
    col_block, col_thread = sch.split(col, [None, tiling.threads_x])
    sch.reorder(batch, channel, row_block, col_block, row_thread, col_thread, row_in_thread)
    block = sch.fuse(batch, channel, row_block, col_block)
    sch.bind(block, "blockIdx.x")
    sch.bind(row_thread, "threadIdx.y")
    sch.bind(col_thread, "threadIdx.x")
    sch.unroll(row_in_thread)
    _accumulate_in_registers(sch, col_thread)
    _stage_input_in_shared(sch, block, tiling, 1)
    return sch


@dataclasses.dataclass(frozen=True)
class SeparableCudaTiling:
    """Free parameters of the fused separable CUDA schedule.

    Attributes:
        pixels: output pixels of one row per block (their depthwise results, all C*M channels,
            are staged in shared memory).
        vector: output channels per thread access (NHWC: one 16-byte store where O allows).
        threads_x: NHWC: threads along output-channel vectors; NCHW: along the block's pixels.
        threads_y: NHWC: along the block's pixels; NCHW: along output channels.
    """

    pixels: int
    vector: int
    threads_x: int
    threads_y: int


def plan_separable_tiling(spec: SeparableSpec, target) -> SeparableCudaTiling:
    """A block of one row's pixels whose depthwise results fit shared memory, and threads over
    (pixels, output channels) dividing the output exactly."""
    shared_limit = int(target.tvm_target.get("max_shared_memory_per_block", 49152))
    width = spec.depthwise.out_width
    per_pixel_bytes = spec.depthwise_channels * spec.itemsize
    pixels = largest_divisor_at_most(width, max(min(WARP, shared_limit // per_pixel_bytes), 1))
    if spec.data_format == "NHWC":
        vector = vector_lanes_for(spec.out_channels, BYTES_PER_VECTOR // spec.itemsize)
        threads_x = largest_divisor_at_most(spec.out_channels // vector, max(MAX_THREADS_PER_BLOCK // pixels, 1))
        return SeparableCudaTiling(pixels, vector, threads_x, pixels)
    threads_y = largest_divisor_at_most(spec.out_channels, max(MAX_THREADS_PER_BLOCK // pixels, 1))
    return SeparableCudaTiling(pixels, 1, pixels, threads_y)


def schedule_separable(sch, spec: SeparableSpec, tiling: SeparableCudaTiling):
    """Blocks over (batch, row, pixel tile): the block's depthwise results for all C*M channels
    computed into shared memory (each thread some (pixel, channel) sums, the window unrolled in
    registers, the padding a bounds test of the load), then each thread sums its outputs over
    the C*M channels in registers, reading the staged results and the pointwise filter, and
    applies the epilogue as it stores them."""
    middle, pointwise = sch.get_sblock(BLOCK_DEPTHWISE), sch.get_sblock(BLOCK_POINTWISE)
    sch.compute_inline(sch.get_sblock(BLOCK_PAD))
    epilogue = sch.get_sblock(BLOCK_EPILOGUE)
    if spec.data_format == "NHWC":
        batch, row, col, out_channel = sch.get_loops(epilogue)
        col_block, col_thread = sch.split(col, [None, tiling.pixels])
        out_serial, out_thread, out_lane = sch.split(out_channel, [None, tiling.threads_x, tiling.vector])
        sch.reorder(batch, row, col_block, col_thread, out_thread, out_serial, out_lane)
        thread_y, thread_x, per_thread = col_thread, out_thread, (out_serial, out_lane)
        sch.vectorize(out_lane)
    else:
        batch, out_channel, row, col = sch.get_loops(epilogue)
        col_block, col_thread = sch.split(col, [None, tiling.pixels])
        out_thread, out_serial = sch.split(out_channel, [tiling.threads_y, None])
        sch.reorder(batch, row, col_block, out_thread, col_thread, out_serial)
        thread_y, thread_x, per_thread = out_thread, col_thread, (out_serial,)
    block = sch.fuse(batch, row, col_block)
    sch.bind(block, "blockIdx.x")
    sch.bind(thread_y, "threadIdx.y")
    sch.bind(thread_x, "threadIdx.x")

    # Each thread's outputs: the C*M channels outermost, the outputs in registers.
    sch.compute_at(pointwise, thread_x, preserve_unit_loops=True)
    sch.set_scope(pointwise, 0, "local")
    *spatial, channel = sch.get_loops(pointwise)[-(len(per_thread) + 1):]
    sch.reorder(channel, *spatial)
    for loop in spatial:
        sch.unroll(loop)
    sch.decompose_reduction(pointwise, channel)

    # The block's depthwise results in shared memory, spread over the same threads.
    sch.compute_at(middle, block, preserve_unit_loops=True)
    sch.set_scope(middle, 0, "shared")
    _, stage_y, stage_x = sch.split(sch.fuse(*sch.get_loops(middle)[1:]), [None, tiling.threads_y, tiling.threads_x])
    sch.bind(stage_y, "threadIdx.y")
    sch.bind(stage_x, "threadIdx.x")
    conv = sch.get_sblock(BLOCK_CONV)
    sch.compute_at(conv, stage_x, preserve_unit_loops=True)
    sch.set_scope(conv, 0, "local")
    for loop in sch.get_loops(conv)[-2:]:
        sch.unroll(loop)
    return sch


def apply(func: Any, spec: Any, target: Any, tunable: bool = False, hand_decisions: bool = False,
          dwc_passes: bool = True):
    """The CUDA rule (see ``base.py``): None unless `target` is a CUDA target. Its design space
    is a single point, the hand tiling (the generic space that tuning unites with it supplies
    the alternatives), so `tunable` changes nothing; CUDA kernels never go through dwc's TIR passes
    (`dwc_passes` changes nothing)."""
    if target.family != "cuda" or not isinstance(spec, (DepthwiseSpec, SeparableSpec)):
        return None
    sch = as_schedule(func)
    if isinstance(spec, SeparableSpec):
        return schedule_separable(sch, spec, plan_separable_tiling(spec, target))
    tiling = plan_tiling(spec, target)
    if spec.data_format == "NHWC":
        return schedule_nhwc(sch, spec, tiling)
    return schedule_nchw(sch, spec, tiling)
