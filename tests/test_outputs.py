"""OutputBuffers: the output arrays a kernel hands out, reused only when nobody else holds them."""

import sys

import numpy as np
import pytest

from dwc_compiler.runtime import outputs
from dwc_compiler.runtime.outputs import OutputBuffers

SHAPE, DTYPE = (2, 3, 5), np.dtype(np.float32)


@pytest.mark.parametrize("to_argument", [None, "tvm"], ids=["array", "tvm-tensor"])
def test_arrays_are_reused_only_once_free(to_argument):
    """A dropped array is handed out again; one held by a variable or through a view is not;
    with both kept arrays held, a new one replaces the older; each array is at its offset."""
    if to_argument == "tvm":
        import tvm_ffi

        to_argument = tvm_ffi.from_dlpack
    buffers = OutputBuffers(SHAPE, DTYPE, to_argument)
    first, argument = buffers.take(0)
    assert first.shape == SHAPE and first.dtype == DTYPE and first.ctypes.data % 64 == 0
    assert argument is first if to_argument is None else argument.data_ptr() == first.ctypes.data
    address = first.ctypes.data
    del first, argument
    again, _ = buffers.take(0)
    assert again.ctypes.data == address and buffers.made == 1
    second, _ = buffers.take(0)  # `again` is held: the second kept array
    assert not np.shares_memory(again, second) and buffers.made == 2
    view = second[1:]
    del second
    third, _ = buffers.take(0)  # both held (`again`, and `view` of the second): a new one
    assert buffers.made == 3 and not np.shares_memory(third, view) and not np.shares_memory(third, again)
    del third
    shifted, _ = buffers.take(16)
    assert shifted.ctypes.data % 64 == 16


@pytest.mark.parametrize("other_taker", ["before the count", "after the count"])
def test_an_array_taken_by_another_thread_meanwhile_is_not_handed_out_twice(monkeypatch, other_taker):
    """Two threads take at once: while one checks a kept array's reference count, another takes
    from the same buffers. The two must end up with different arrays. Here the other taker runs
    from inside the first's first reference count check of an array, either before that check
    reads the count (it then sees what the other taker holds) or after it (as if it read it
    first): a taker that checks before it holds the array fails the second case."""
    real_refcount = sys.getrefcount
    taken_meanwhile = []
    state = {"interleave": False}

    def refcount(obj):
        interleave = state["interleave"] and isinstance(obj, np.ndarray) and obj.shape == SHAPE
        if interleave and other_taker == "before the count":
            state["interleave"] = False
            taken_meanwhile.append(buffers.take(0)[0])
        count = real_refcount(obj) - 1  # as the caller would see it (without this frame's hold)
        if interleave and other_taker == "after the count":
            state["interleave"] = False
            del obj  # held by nothing here now, as after the check
            taken_meanwhile.append(buffers.take(0)[0])
        return count

    monkeypatch.setattr(outputs.sys, "getrefcount", refcount)
    buffers = OutputBuffers(SHAPE, DTYPE)
    monkeypatch.undo()
    buffers.take(0)  # the first kept array, dropped at once: free
    state["interleave"] = True
    mine = buffers.take(0)[0]
    assert taken_meanwhile and not np.shares_memory(mine, taken_meanwhile[0])
    assert buffers.made == 2  # one of the two got the free array, the other a new one
