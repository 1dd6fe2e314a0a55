"""Channel blocks placed at an input's alignment, for NHWC inputs that start off a vector boundary.

An NHWC kernel reads and writes each pixel's channels a vector at a time. When channel 0 sits
`phase` elements past a vector boundary (NumPy places large arrays 16 bytes past a 64-byte
boundary: phase 4 for float32 on AVX-512), every vector load of the usual blocks
``[0, L), [L, 2L), ...`` straddles two cache lines (up to 1.5x the time of an aligned input on
the small MobileNetV2 layers, one thread). Placed instead at ``[L - phase, 2L - phase), ...``,
the blocks between the pixel's first and last vector boundary are aligned; one block at
channel 0 and one ending at channel C cover the channels before and after them, overlapping
their neighbours (the overlapped channels are computed twice and stored twice with the same
value). A pixel then takes C / L + 1 blocks instead of C / L, two of them unaligned (more, by
repeating the last block, where a register tile or a parallel task holds several blocks).

The op's compute runs over the blocks' positions (``extent`` of them, a whole number of
vectors); :meth:`ChannelBlocks.channel` maps a position to the channel it computes, which
every read and the output's store go through.

Kernels that run channel blocks in parallel (in groups of neighbouring blocks, a task each)
hand each thread a range of positions. Written at
the input's offset, the output lines that hold the first block (channel 0) and the last ones
(ending at C) also hold the second block's and the last aligned block's channels, and the next
pixel's first block: where threads split those blocks between them, two cores wrote one line
for every pixel (at 2 threads 1.58-1.86x the time of an aligned input on the small MobileNetV2
layers). Such kernels start the positions at the last aligned block (``first``) and go round
the pixel from there: the blocks that share lines come first, together, and every range
boundary falls between two aligned blocks, each of whole lines, up to a number of threads
(:meth:`ChannelBlocks.max_threads`: with more, the first range no longer holds them all).
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class ChannelBlocks:
    """Blocks of `lanes` channels for an input whose channel 0 lies `phase` elements past a
    vector boundary, over `channels` channels (a multiple of `lanes`).

    Attributes:
        lanes: channels per block (the vector's lanes).
        phase: elements between the vector boundary before channel 0 and channel 0, 0 < phase < lanes.
        channels: the pixel's channels.
        count: blocks per pixel, at least ``channels / lanes + 1`` (more repeat the last block:
            a register tile or a parallel task of several blocks needs a multiple of them).
        first: the block the first position computes (positions go round the blocks from
            there); 0 in kernels that run row tiles in parallel.
    """

    lanes: int
    phase: int
    channels: int
    count: int
    first: int = 0

    def __post_init__(self) -> None:
        if (not 0 < self.phase < self.lanes or self.channels % self.lanes or self.channels < 2 * self.lanes
                or self.count < self.channels // self.lanes + 1 or not 0 <= self.first < self.count):
            raise ValueError(f"internal: no {self.count} channel blocks of {self.lanes} lanes at phase "
                             f"{self.phase} for {self.channels} channels, from block {self.first}")

    @staticmethod
    def count_for(vectors: int, blocks_per_task: int) -> int:
        """Blocks per pixel for channels of `vectors` whole vectors, in whole tasks (register
        tiles, or the groups of them that channel-parallel kernels run a task each) of
        `blocks_per_task` blocks: ``vectors + 1``, rounded up to whole tasks."""
        return -(-(vectors + 1) // blocks_per_task) * blocks_per_task

    @classmethod
    def for_tile(cls, lanes: int, phase: int, channels: int, blocks_per_task: int,
                 shared_lines_first: bool = False) -> "ChannelBlocks":
        """The fewest blocks that cover `channels` at `phase` in whole tasks of `blocks_per_task`
        (:meth:`count_for`); with `shared_lines_first` (kernels that run channel blocks in
        parallel), the positions start at the last aligned block, so that the blocks that share
        output lines come first."""
        vectors = channels // lanes
        return cls(lanes, phase, channels, cls.count_for(vectors, blocks_per_task),
                   vectors - 1 if shared_lines_first else 0)

    def max_threads(self, batch: int, blocks_per_task: int) -> int:
        """The most threads that, splitting the ``batch * count / blocks_per_task`` tasks of a
        channel-parallel kernel as TVM's parallel loop does (contiguous ranges of
        ``ceil(tasks / threads)``), keep the blocks that share output lines (the first
        ``count - channels / lanes + 3`` positions: the last aligned block, the last ones, the
        first two) in one range, on this many threads and on any fewer."""
        tasks = self.count // blocks_per_task
        shared = -(-(self.count - self.channels // self.lanes + 3) // blocks_per_task)  # tasks
        extent = batch * tasks
        for threads in range(2, extent + 1):
            chunk = -(-extent // threads)
            if any(0 < start % tasks < shared for start in range(chunk, extent, chunk)):
                return threads - 1
        return extent

    @property
    def extent(self) -> int:
        """Positions the compute runs over: ``count * lanes``."""
        return self.count * self.lanes

    def channel(self, position: Any) -> Any:
        """The channel a position computes (a TIR expression of `position`): the position's
        block ``b`` (counted round from ``first``) starts at ``b * lanes - phase``, clamped to
        the pixel, so block 0 starts at 0 and the last (and any after it) ends at ``channels``."""
        from tvm import tirx

        block = position // self.lanes
        if self.first:
            block = tirx.floormod(block + self.first, self.count)
        start = tirx.max(0, tirx.min(block * self.lanes - self.phase, self.channels - self.lanes))
        return start + position % self.lanes
