"""The output arrays a kernel hands out, reused once nothing outside the kernel holds them."""

from __future__ import annotations

import sys
from typing import Any, Callable

import numpy as np

from .arrays import empty_aligned

# Kept arrays. The usual loop, ``y = f(x)``, still holds the last result while the next call runs,
# so with one kept array every call of such a loop made a new one; with two they alternate.
KEPT = 2


class OutputBuffers:
    """Output arrays of one shape and dtype for the calls of one kernel.

    A new array costs more than a small layer's run: its pages are fresh. With one kept array,
    the loop ``y = depthwise_conv2d(x, w, ...)`` made one every call and paid 8.4-8.8 us a call
    more than calls whose results were dropped (``benchmarks/results/
    call-overhead-20261201-1525-at-7a41453.md``). So the last two arrays are kept, and each is
    handed out again once nothing outside holds it or a view of it (a variable, a slice, a
    tensor made from it). When both are held, a new array takes the place of the one made longest
    ago.

    Attributes:
        take: ``take(offset) -> (array, argument)``: a free array `offset` bytes past a 64-byte
            boundary (a multiple of the itemsize below 64), and what to pass the compiled function
            for it: ``to_argument(array)``, made once per array (TVM's tensor of it saves the FFI
            a conversion on each call), or the array itself. An array is claimed by holding it
            (its reference count), so two threads are never handed the same one: a taker holds
            it first, then checks that it is the array's only holder besides the kept entry
            (the entry's TVM tensor of it included) and that no view holds its buffer.
        made: how many arrays were made so far (each a fresh allocation).
        kept: the kept entries, ``(array, argument, the array's buffer, offset, the buffer's
            count while free, the array's count while one taker holds it)``, which a caller on
            a hot path may test inline as `take`'s first loop does (``runtime/lean_call.py``:
            a call of `take` costs ~0.1 us) before it calls `take`.

    The claims rest on the GIL (exact reference counts, each change atomic); a free-threaded
    Python would need a lock around `take`.
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype,
                 to_argument: Callable[[np.ndarray], Any] | None = None) -> None:
        self.made = 0
        refcount, turn = sys.getrefcount, [0]

        # A kept entry: (array, argument, its backing buffer, offset, the count of references to
        # the buffer while nothing outside holds it or a view of the array, the array's count
        # while one taker holds it). Each count is taken by the same expression that tests it
        # later, so that what the interpreter itself holds during a call counts the same on both
        # sides. A place never used holds an entry at no offset, which nothing takes.
        kept: list[tuple] = [(None, None, None, -1, 0, 0)] * KEPT
        self.kept = kept

        def make(offset: int) -> tuple:
            """A new kept entry for arrays `offset` bytes past a 64-byte boundary."""
            array = empty_aligned(shape, dtype, offset)
            entry = (array, array if to_argument is None else to_argument(array), array.base, offset)
            claimed = refcount(array)  # as `result` in take, held by one taker
            del array
            self.made += 1
            return entry + (refcount(entry[2]), claimed)

        def take(offset: int) -> tuple:
            for entry in kept:  # a free one at this offset: claimed first, then checked
                if entry[3] == offset:
                    result = entry[0]
                    # Only this taker holds it (no variable, no other thread), and no view holds its buffer.
                    if refcount(result) == entry[5] and refcount(entry[2]) == entry[4]:
                        return result, entry[1]
                    result = None
            for index, entry in enumerate(kept):  # else a place that is unused or whose array is free
                if entry[0] is None:
                    break
                result = entry[0]
                if refcount(result) == entry[5] and refcount(entry[2]) == entry[4]:
                    break
                result = None
            else:  # all are held outside: replace the one made longest ago
                index = turn[0]
            result = None
            turn[0] = (index + 1) % KEPT
            kept[index] = entry = make(offset)
            return entry[0], entry[1]

        self.take = take
