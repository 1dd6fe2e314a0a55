"""A TIR pass for AVX2 kernels: NCHW window sums at column stride 2 kept in lane order, so that
each strided window load is one in-lane shuffle.

At column stride 2 a vector of L output columns reads the even (or odd) elements of two vectors
of input (``tir_passes``: ``Shuffle([a, b], [0, 2, ..., 2L - 2])``). AVX2 has no two-source
permute across its 128-bit halves (AVX-512's ``vpermt2ps``), so LLVM makes each such pick two
instructions, ``vshufps`` within the halves and ``vpermpd`` across them: in 28x28x192-s2 NCHW
54 of each beside 66 FMAs per tile, on the ports the FMAs use. Within the halves alone the pick
gives the columns in another order, ``[0, 1, 4, 5, 2, 3, 6, 7]`` for 8 lanes (:func:`lane_order`).
The sums only add such vectors times a broadcast filter tap, so they may as well hold their
columns in that order: each pick becomes the one ``vshufps``, and the sums are put back in order
once, where the row is stored (a ``vpermpd`` per vector of sums). Measured on the 2-core
znver3 machine (``benchmarks/results/nchw-lane-order-*.md``, 41 rounds): 0.76-0.84x the time of
the stride-2 MobileNetV2 layers at 1 thread, 0.80-0.86x at 2.

The pass works on the register tile's sums buffer (a buffer the kernel allocates), and only
where every store to it is a whole aligned vector of zeros or of itself plus such a pick times a
broadcast (or one element of a buffer of vectors, as TVM makes some), and every other read of
it is of contiguous elements at constant places (or one such element), none of whose address
is taken: then the sums' order is invisible outside those reads, which it rewrites. Anything
else leaves the buffer as it was.
"""

from __future__ import annotations

from typing import Any

from .tir_exprs import as_int, bindings_of, llvm_target_has

HALF_BYTES = 16  # AVX's in-lane shuffles work within 128-bit halves


def lane_order(lanes: int, itemsize: int) -> list[int]:
    """The column each lane holds after an in-lane even/odd pick of two vectors of `lanes`
    elements of `itemsize` bytes: lane ``k = E * h + i`` (E elements a 128-bit half, h the half)
    holds column ``E/2 * h + i`` from the first vector (i < E/2), else ``lanes/2 + E/2 * h + i - E/2``
    from the second. 8 float32 lanes: ``[0, 1, 4, 5, 2, 3, 6, 7]``."""
    per_half = HALF_BYTES // itemsize
    half = per_half // 2
    order = []
    for lane in range(lanes):
        block, index = divmod(lane, per_half)
        order.append(half * block + index if index < half else lanes // 2 + half * block + index - half)
    return order


def _in_lane(indices: list[int], lanes: int, itemsize: int) -> bool:
    """Whether a shuffle of vectors of `lanes` elements with `indices` takes each lane from the
    same 128-bit half of one of its inputs (one ``vshufps``-like instruction)."""
    per_half = HALF_BYTES // itemsize
    return all((index % lanes) // per_half == lane // per_half for lane, index in enumerate(indices))


def _strided_pick(expr: Any, lanes: int, itemsize: int) -> Any | None:
    """`expr` with its lanes in :func:`lane_order` where it is a shuffle of two whole vectors
    that the reordering makes in-lane, else None."""
    from tvm import tirx

    if not isinstance(expr, tirx.Shuffle) or len(expr.vectors) != 2 or any(
            vector.ty.dtype.lanes != lanes for vector in expr.vectors):
        return None
    indices = [as_int(index) for index in expr.indices]
    if None in indices or len(indices) != lanes:
        return None
    reordered = [indices[column] for column in lane_order(lanes, itemsize)]
    if not _in_lane(reordered, lanes, itemsize):
        return None
    return tirx.Shuffle(list(expr.vectors), reordered)


def _reordered_addend(value: Any, lanes: int, itemsize: int) -> Any | None:
    """``pick * broadcast`` (either order) with the pick in lane order, else None."""
    from tvm import tirx

    if not isinstance(value, tirx.Mul):
        return None
    for pick, tap in ((value.a, value.b), (value.b, value.a)):
        if isinstance(tap, tirx.Broadcast):
            reordered = _strided_pick(pick, lanes, itemsize)
            if reordered is not None:
                return tirx.Mul(reordered, tap) if pick is value.a else tirx.Mul(tap, reordered)
    return None


def _reordered_store(store: Any, lanes: int, itemsize: int, aligned) -> Any | None:
    """A store to the sums buffer in lane order: ``sums[v] = 0`` unchanged, ``sums[v] = sums[v]
    + pick * tap`` with the pick reordered; None for any other store. `v` is one element of a
    buffer of vectors (`aligned` None), else a vector of `lanes` elements from a multiple of
    `lanes` (``aligned(base)``)."""
    import tvm_ffi
    from tvm import tirx
    from tvm.ir import TensorLoad

    index = store.indices[0] if len(store.indices) == 1 else None
    if index is None or store.value.ty.dtype.lanes != lanes:
        return None
    if aligned is None:
        if isinstance(index, tirx.Ramp):
            return None
    elif (not isinstance(index, tirx.Ramp) or as_int(index.stride) != 1 or as_int(index.lanes) != lanes
            or not aligned(index.base)):
        return None
    value = store.value
    if isinstance(value, tirx.Broadcast):
        return store
    if not isinstance(value, tirx.Add):
        return None
    for sums, addend in ((value.a, value.b), (value.b, value.a)):
        if (isinstance(sums, TensorLoad) and sums.source.same_as(store.buffer) and len(sums.indices) == 1
                and tvm_ffi.structural_equal(sums.indices[0], index)):
            reordered = _reordered_addend(addend, lanes, itemsize)
            if reordered is not None:
                return tirx.BufferStore(store.buffer, tirx.Add(sums, reordered), store.indices)
    return None


def _read_in_order(load: Any, lanes: int, itemsize: int, size: int | None) -> Any | None:
    """A read of the sums buffer, from sums kept in lane order, in column order: of one element
    of a buffer of vectors (`size` None), that vector shuffled back; of contiguous elements at a
    constant place, the whole vectors they span, shuffled back; None for any other read."""
    from tvm import tirx

    position = {column: lane for lane, column in enumerate(lane_order(lanes, itemsize))}
    index = load.indices[0] if len(load.indices) == 1 else None
    if size is None:
        if index is None or isinstance(index, tirx.Ramp) or load.ty.dtype.lanes != lanes:
            return None
        return tirx.Shuffle([load], [position[column] for column in range(lanes)])
    if isinstance(index, tirx.Ramp):
        first, count = as_int(index.base), as_int(index.lanes)
        if as_int(index.stride) != 1:
            return None
    else:
        first, count = (as_int(index) if index is not None else None), 1
    if first is None or count is None or first + count > size:
        return None
    blocks = sorted({element // lanes for element in range(first, first + count)})
    vectors = [tirx.BufferLoad(load.source, [tirx.Ramp(block * lanes, 1, lanes)]) for block in blocks]
    indices = [blocks.index(element // lanes) * lanes + position[element % lanes]
               for element in range(first, first + count)]
    return tirx.Shuffle(vectors, indices)


def _each_rewritten(nodes: list, rewrite) -> list[tuple] | None:
    """``(node, rewrite(node))`` for each of `nodes`, or None where `rewrite` refuses one (None)."""
    pairs = [(node, rewrite(node)) for node in nodes]
    return None if any(new is None for _, new in pairs) else pairs


def _views_of(body: Any, buffer: Any) -> list:
    """`buffer` and the buffers `body` declares on its storage (``DeclBuffer`` with ``data`` =
    ``buffer_data(buffer)``, as TVM's lowering does for a second loop nest over the sums)."""
    import tvm_ffi
    from tvm import tirx

    declared = []
    tvm_ffi.structural_walk(body, ((tirx.DeclBuffer, lambda node: declared.append(node)),))
    views = [buffer]
    for node in declared:
        arguments = getattr(node.data, "args", None)  # buffer_data(source)
        source = arguments[0] if arguments is not None and len(arguments) == 1 else None
        if source is not None and any(source.same_as(view) for view in views):
            views.append(node.buffer)
    return views


def _sums_in_lane_order(body: Any, buffer: Any, bindings: dict) -> Any:
    """`body` with the sums in `buffer` (allocated by the kernel) kept in lane order, or `body`
    unchanged where any store or read of it does not allow that (module docstring)."""
    import numpy as np
    import tvm_ffi
    from tvm import tirx
    from tvm.ir import Call, TensorLoad
    from tvm.sym.analyzer import Analyzer

    element, _, vector_lanes = str(buffer.dtype).partition("x")  # "float32", or "float32x8": a buffer of vectors
    if element not in ("float16", "float32", "float64") or len(buffer.shape) != 1 or as_int(buffer.shape[0]) is None:
        return body
    itemsize = np.dtype(element).itemsize
    views = _views_of(body, buffer)

    def of_sums(view: Any) -> bool:
        return any(view.same_as(other) for other in views)

    stores = []
    tvm_ffi.structural_walk(body, ((tirx.BufferStore, lambda store: stores.append(store)
                                    if of_sums(store.buffer) else None),))
    if not stores:
        return body
    if vector_lanes:
        lanes, size, aligned = int(vector_lanes), None, None
    else:
        first_index = stores[0].indices[0] if len(stores[0].indices) == 1 else None
        lanes = as_int(first_index.lanes) if isinstance(first_index, tirx.Ramp) else None
        size = as_int(buffer.shape[0])
        if lanes is None or size % lanes:
            return body
        analyzer = Analyzer()

        def aligned(base):
            inlined = tvm_ffi.structural_map(base, [(tirx.Var, lambda var: bindings.get(var, var))])
            return analyzer.can_prove_equal(tirx.FloorMod(inlined, lanes), 0)

    if lanes * itemsize <= HALF_BYTES:
        return body

    reordered_stores = _each_rewritten(stores, lambda store: _reordered_store(store, lanes, itemsize, aligned))
    if reordered_stores is None:
        return body
    if all(new.same_as(old) for old, new in reordered_stores):
        return body  # only zeros: nothing to reorder
    own_reads = [old.value.a if isinstance(old.value.a, TensorLoad) else old.value.b  # each store's sums[v]
                 for old, _ in reordered_stores if isinstance(old.value, tirx.Add)]
    reads = []
    tvm_ffi.structural_walk(body, ((TensorLoad, lambda load: reads.append(load) if of_sums(load.source) else None),))
    addressed = []  # reads whose address is taken (an intrinsic's pointer): their order shows
    tvm_ffi.structural_walk(body, ((Call, lambda call: addressed.extend(call.args)
                                    if getattr(call.op, "name", "") == "tirx.address_of" else None),))
    if any(isinstance(arg, TensorLoad) and of_sums(arg.source) for arg in addressed):
        return body
    outside = [load for load in reads if not any(load.same_as(own) for own in own_reads)]
    replaced_reads = _each_rewritten(outside, lambda load: _read_in_order(load, lanes, itemsize, size))
    if replaced_reads is None:
        return body

    def store_of(node):
        return next((new for old, new in reordered_stores if node.same_as(old)), node)

    def read_of(node):
        return next((new for old, new in replaced_reads if node.same_as(old)), node)

    return tvm_ffi.structural_map(body, [(tirx.BufferStore, store_of), (TensorLoad, read_of)])


def sums_in_lane_order():
    """The TIR pass (on lowered PrimFuncs, after ``tir_passes.masked_select_loads``) that keeps
    the sums of NCHW windows at column stride 2 in lane order on x86 with AVX2 and without
    AVX-512 (module docstring); other targets are left alone."""
    import tvm
    import tvm_ffi
    from tvm import tirx

    def rewrite(func, _mod, _ctx):
        if not llvm_target_has(func, "avx2") or llvm_target_has(func, "avx512f"):
            return func
        allocations = []
        tvm_ffi.structural_walk(func.body, ((tirx.AllocBuffer, lambda node: allocations.append(node.buffer)),))
        if not allocations:
            return func
        bindings = bindings_of(func.body)
        body = func.body
        for buffer in allocations:
            body = _sums_in_lane_order(body, buffer, bindings)
        return func if body.same_as(func.body) else func.with_body(body)

    return tvm.tirx.transform.prim_func_pass(rewrite, opt_level=0, name="dwc.SumsInLaneOrder")
