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

from ..ops.depthwise import DepthwiseSpec
from ..ops.primfunc import BLOCK_CONV, BLOCK_EPILOGUE, BLOCK_PAD
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
    rows = (out_rows - 1) * spec.strides[0] + (spec.filter_height - 1) * spec.dilations[0] + 1
    cols = (out_cols - 1) * spec.strides[1] + (spec.filter_width - 1) * spec.dilations[1] + 1
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


def apply(func: Any, spec: Any, target: Any, tunable: bool = False, hand_decisions: bool = False):
    """The CUDA rule (see ``base.py``): None unless `target` is a CUDA target. Its design space
    is a single point, the hand tiling (the generic space that tuning unites with it supplies
    the alternatives), so `tunable` changes nothing."""
    if target.family != "cuda" or not isinstance(spec, DepthwiseSpec):
        return None
    sch = as_schedule(func)
    tiling = plan_tiling(spec, target)
    if spec.data_format == "NHWC":
        return schedule_nhwc(sch, spec, tiling)
    return schedule_nchw(sch, spec, tiling)
