"""What dwc adds to TVM's TIR lowering of CPU kernels: strided copies made vector shuffles,
vector selects of loads made masked loads, odd-width stores made masked stores.

Where the NCHW schedules copy each channel plane, padded, into a small buffer before its sums
(ARM, float16 on AVX2, and x86 kernels compiled without these passes), with a column stride of 2 the
copy splits even and odd columns (``schedules/cpu.py``, ``padded_plane``), so that strided
windows load contiguous vectors. Lowered, the copy of one
row's columns is a loop of scalar statements:

    for g in range(G):
        pad[b + g] = input[a + 2 * g]
        pad[b + P + g] = input[a + 2 * g + 1]

TVM cannot vectorize it (a vector of ``input[a + 2 * g]`` is a strided load, which its LLVM
code generator makes lane by lane), and LLVM's loop vectorizer, which gets it as a scalar loop,
makes short rows (7 or 14 pairs) into masked 4-lane pieces and scalar moves: 70-74% of the
stride-2 NCHW kernels' time went to the copy (perf, 1 thread, Emerald Rapids: 14x14x576-s2,
28x28x192-s2, 56x56x144-s2). :func:`deinterleave_copies` rewrites such loops as whole-vector
loads of the contiguous input and one shuffle per phase (``vpermps``/``vpermt2ps`` on x86,
``uzp1``/``uzp2`` on NEON), a loop over chunks of :data:`CHUNK_LANES` output lanes. On AVX-512
the last, shorter chunk loads and stores whole vectors under a k-mask, where an odd width
(7 lanes) would be split into three pieces (a row of 14x14x576-s2: one masked load, two
permutes and two masked stores). Measured in ``benchmarks/results/strided-copy-*.md``.

The NCHW kernels on x86 read their windows from the input itself, without the copy (column
strides up to :data:`MAX_SHUFFLED_STRIDE`): a window row of a vector of output columns is one
vector load, some of whose lanes fall in the padding columns (or past the row). The op's
padding tests the column with a ``Select`` (``ops/depthwise.py``), which TVM vectorizes into
``Select(mask, input[ramp], 0)``: a whole-vector load, the mask applied after it. Such a load
reads elements it does not use, before the first element of the input or past its last, which
may lie on a page that is not mapped. :func:`masked_select_loads` makes it one load that reads
only the lanes the mask keeps and gives 0 in the others (``llvm.masked.load`` with a zero
pass-through: a ``vmovups`` under a k-mask with zeroing on AVX-512, ``vmaskmovps`` on AVX2).
It applies to every CPU build, and refuses a vector ``Select`` that reads memory it cannot mask
so: wherever a vector ``Select`` chooses a load, the lanes it does not choose are never read.
A strided load (column stride 2: ``input[Ramp(b, 2, L)]``, which LLVM makes L scalar loads)
becomes contiguous masked loads of the elements it spans, each reading only the elements it
uses, and one shuffle that picks them (``vpermt2ps``). Measured in
``benchmarks/results/nchw-windows-*.md``.

Most column blocks of a wide row read no padding column, yet every load was masked, and on the
znver3 machine masked loads cost more than plain ones. The NCHW schedule marks the column-block
loop with the blocks that read none (``schedules/cpu.py``, ``interior_column_blocks``), and
:func:`masked_select_loads` first gives them a loop of their own (:func:`_peeled_interior`),
where every ``Select`` whose test it proves true for all their iterations is its bare load; the
border loops lose the tests of their vectors inside the input. A strided load that no mask
limits becomes plain loads of the elements it spans, the last ending at its last element
(:func:`_overlapping_pieces`). Measured in ``benchmarks/results/nchw-interior-*.md``.

At column stride 2 a window row's first and second taps read neighbouring elements; in each
innermost loop :func:`_paired_strided_loads` has both shuffle the same two vectors (even lanes
and odd), which LLVM loads once: four loads per row of three taps instead of six. On the znver3
machine, 1 thread, 41 rounds: 14x14x576-s2 0.77x the time, 28x28x192-s2 and 56x56x144-s2 0.91x,
112x112x96-s2 0.95x (``benchmarks/results/nchw-paired-loads-*.md``).

On AVX2, whose picks across the 128-bit halves take two shuffles, ``tir_lane_order`` then keeps
the sums of such picks in the order of an in-lane pick, put back in column order where the row
is stored.

On AVX-512, :func:`masked_odd_stores` makes a vector store whose lane count is no power of two
(an NCHW row of 14 or 7 columns, which LLVM splits into 8 + 4 + 2 lanes) one store of the next
power of two under a k-mask: 14x14x384-s1 NCHW 0.84x the time, 7x7x960 0.85x, 28x28x192-s2
0.89x (1 thread, 61 interleaved rounds, quick checks, with TVM's masked loads and a select).
The stored row is computed on the whole vector where its parts allow (:func:`_widened`: the
register tile's sums are rounded up to whole vectors), with x86's own min and max for a fused
ReLU/ReLU6. Shuffled out from the odd width, the epilogue's clip made LLVM narrow the window
sums to the odd width, and the loads they share across rows then spilled: 14x14x384-s1 NCHW
with bias + ReLU6 took 1.47x the plain kernel's time, 1.13x computed on whole vectors
(``benchmarks/results/epilogue-overhead-*.md``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .tir_exprs import as_int, bindings_of, llvm_target_has
from .tir_lane_order import sums_in_lane_order

CHUNK_LANES = 16  # output lanes per shuffle: one AVX-512 float32 vector
MAX_SHUFFLED_STRIDE = 4  # strided vector loads up to this stride become contiguous pieces
PIPELINE_NAME = "dwc-cpu"


def _linear(expr: Any, var: Any) -> tuple[Any, Any] | None:
    """(coefficient, base) of `expr` as ``coefficient * var + base``, or None."""
    from tvm.sym.pattern import detect_linear_equation

    found = detect_linear_equation(expr, [var])
    return (found[0], found[1]) if len(found) == 2 else None


@dataclasses.dataclass(frozen=True)
class StridedCopy:
    """A serial loop ``for g in range(extent): target[output_bases[p] + g] = source[input_base +
    stride * g + p]``, one store per phase ``p`` in ``0 .. stride - 1``."""

    source: Any
    target: Any
    input_base: Any
    output_bases: tuple
    stride: int
    extent: int
    dtype: str


def strided_copy(loop: Any) -> StridedCopy | None:
    """`loop` as a :class:`StridedCopy`, or None when it is not one, or when rewriting it could
    change what it does: the phases' output ranges must not overlap (the rewrite stores each
    phase's lanes together, the loop interleaved them), and source and target must differ."""
    from tvm import tirx
    from tvm.ir import TensorLoad
    from tvm.sym.analyzer import Analyzer

    extent = as_int(loop.extent)
    if (loop.kind != tirx.ForKind.SERIAL or as_int(loop.min) != 0 or extent is None or extent < 2
            or loop.annotations):
        return None
    statements = list(loop.body.seq) if isinstance(loop.body, tirx.SeqStmt) else [loop.body]
    # TVM's common-subexpression pass binds parts of the indices first: they are inlined.
    bindings: list[tuple[Any, Any]] = []
    while statements and isinstance(statements[0], tirx.Bind):
        bindings.append((statements[0].var, _inlined(statements[0].value, bindings)))
        statements.pop(0)
    stride = len(statements)
    if stride < 2 or not all(isinstance(store, tirx.BufferStore) and isinstance(store.value, TensorLoad)
                             and len(store.indices) == 1 and len(store.value.indices) == 1
                             and store.value.ty.dtype.lanes == 1 for store in statements):  # scalars only
        return None
    source, target = statements[0].value.source, statements[0].buffer
    if source.same_as(target) or not all(store.value.source.same_as(source) and store.buffer.same_as(target)
                                         for store in statements):
        return None
    analyzer = Analyzer()
    input_base, output_bases = None, []
    for phase, store in enumerate(statements):
        read = _linear(_inlined(store.value.indices[0], bindings), loop.loop_var)
        write = _linear(_inlined(store.indices[0], bindings), loop.loop_var)
        if read is None or write is None or as_int(read[0]) != stride or as_int(write[0]) != 1:
            return None
        input_base = read[1] if input_base is None else input_base
        if as_int(analyzer.simplify(read[1] - input_base)) != phase:
            return None
        output_bases.append(write[1])
    for first, base in enumerate(output_bases):
        for other in output_bases[first + 1:]:
            distance = as_int(analyzer.simplify(other - base))
            if distance is None or abs(distance) < extent:
                return None
    return StridedCopy(source, target, input_base, tuple(output_bases), stride, extent, str(statements[0].value.ty))


def _inlined(expr: Any, bindings: list[tuple[Any, Any]]) -> Any:
    """`expr` with the variables of `bindings` (``(var, value)`` pairs) replaced by their values."""
    import tvm_ffi
    from tvm import tirx

    def value_of(var):
        return next((value for bound, value in bindings if bound.same_as(var)), var)

    return tvm_ffi.structural_map(expr, [(tirx.Var, value_of)]) if bindings else expr


def _lanes_mask(lanes: int, used: int) -> Any:
    """A boolean vector of `lanes` lanes, true for the first `used`."""
    from tvm import tirx

    return tirx.Ramp(tirx.const(0, "int32"), 1, lanes) < tirx.Broadcast(tirx.const(used, "int32"), lanes)


def _power_of_two_at_least(count: int) -> int:
    return 1 << (count - 1).bit_length()


def _shuffled(loop: Any, masked: bool) -> Any:
    """`loop` as vector loads and shuffles when it is a :class:`StridedCopy`, else `loop`; with
    `masked`, the last chunk's load and stores are k-masked whole vectors (AVX-512) rather than
    odd-width vectors, which LLVM splits into several pieces each."""
    from tvm import tirx
    from tvm.tirx.op import masked_load, masked_store

    copy = strided_copy(loop)
    if copy is None:
        return loop
    index_dtype = str(loop.extent.ty)

    def chunk(first: Any, lanes: int) -> Any:
        """The statements for output lanes first .. first + lanes - 1."""
        start = copy.input_base + first * copy.stride
        if lanes == 1:  # a last pair alone: the scalar statements themselves
            return tirx.SeqStmt([tirx.BufferStore(copy.target, tirx.BufferLoad(copy.source, [start + phase]),
                                                  [base + first]) for phase, base in enumerate(copy.output_bases)])
        read = copy.stride * lanes
        read_lanes, write_lanes = ((_power_of_two_at_least(read), _power_of_two_at_least(lanes))
                                   if masked and lanes < CHUNK_LANES else (read, lanes))
        vector = tirx.Var("deinterleaved", f"{copy.dtype}x{read_lanes}")
        load = (tirx.BufferLoad(copy.source, [tirx.Ramp(start, 1, read)]) if read_lanes == read else
                masked_load(f"{copy.dtype}x{read_lanes}", copy.source, tirx.Ramp(start, 1, read_lanes),
                            _lanes_mask(read_lanes, read)))
        stores = []
        for phase, base in enumerate(copy.output_bases):
            picked = tirx.Shuffle([vector], [phase + copy.stride * min(lane, lanes - 1) for lane in range(write_lanes)])
            where = tirx.Ramp(base + first, 1, write_lanes)
            stores.append(tirx.BufferStore(copy.target, picked, [where]) if write_lanes == lanes else
                          tirx.Evaluate(masked_store(copy.target, picked, where, _lanes_mask(write_lanes, lanes))))
        return tirx.SeqStmt([tirx.Bind(vector, load), *stores])

    whole, rest = divmod(copy.extent, CHUNK_LANES)
    parts = []
    if whole == 1:
        parts.append(chunk(tirx.const(0, index_dtype), CHUNK_LANES))
    elif whole > 1:
        index = tirx.Var(f"{loop.loop_var.name}_chunk", index_dtype)
        parts.append(tirx.For(index, tirx.const(0, index_dtype), tirx.const(whole, index_dtype), tirx.ForKind.SERIAL,
                              chunk(index * CHUNK_LANES, CHUNK_LANES)))
    if rest:
        parts.append(chunk(tirx.const(whole * CHUNK_LANES, index_dtype), rest))
    return tirx.SeqStmt(parts) if len(parts) > 1 else parts[0]


def deinterleave_copies():
    """The TIR pass (on lowered PrimFuncs) that rewrites strided copy loops (module docstring)."""
    import tvm
    import tvm_ffi
    from tvm import tirx

    def rewrite(func, _mod, _ctx):
        masked = llvm_target_has(func, "avx512f")
        body = tvm_ffi.structural_map(func.body, [(tirx.For, lambda loop: _shuffled(loop, masked))])
        return func if body.same_as(func.body) else func.with_body(body)

    return tvm.tirx.transform.prim_func_pass(rewrite, opt_level=0, name="dwc.DeinterleaveCopies")


def _zeroing_load(load: Any, first: Any, lanes: int, mask: Any) -> Any:
    """A load of `lanes` contiguous elements of `load`'s buffer from index `first`, each read only
    where `mask` holds and 0 elsewhere: LLVM's ``llvm.masked.load`` with a zero pass-through (a
    ``vmovups`` under a k-mask with zeroing on AVX-512). TVM's ``tirx.op.masked_load`` leaves the
    other lanes undefined, and the ``Select`` that zeroed them LLVM turned into an ``and`` or a
    shuffle per load, which share the FMAs' ports."""
    import numpy as np
    from tvm import tirx
    from tvm.target.codegen import llvm_version_major

    element = str(load.ty.dtype).split("x")[0]  # "float32x16" -> "float32"
    address = tirx.call_intrin("handle", "tirx.address_of", tirx.BufferLoad(load.source, [first]))
    zero = tirx.Broadcast(tirx.const(0, element), lanes)
    # LLVM 22 (TVM 0.27's wheels) dropped the alignment argument; before, it came second.
    alignment = [] if llvm_version_major() >= 22 else [tirx.const(np.dtype(element).itemsize, "int32")]
    return tirx.call_llvm_intrin(f"{element}x{lanes}", "llvm.masked.load", address, *alignment, mask, zero)


def _masked_vector_load(load: Any, mask: Any | None) -> Any | None:
    """`load` (a vector load at ``Ramp(base, s, L)``, s a constant >= 1) as loads of contiguous
    elements under masks that leave out every element it does not use, 0 in the lanes `mask`
    leaves out (None: all used), or None when it is not such a load.

    For s = 1, one masked load. For s > 1, s contiguous loads of L lanes, lane t of the whole
    (``base + t``) read only where t is a multiple of s whose lane t / s the mask keeps, and a
    shuffle that picks every s-th lane (``vpermt2ps`` on AVX-512): what LLVM makes of a strided
    TVM load otherwise is L scalar loads and inserts."""
    from tvm import tirx
    from tvm.ir import TensorLoad

    if not isinstance(load, TensorLoad) or len(load.indices) != 1 or not isinstance(load.indices[0], tirx.Ramp):
        return None
    ramp, lanes = load.indices[0], load.ty.dtype.lanes
    stride = as_int(ramp.stride)
    if lanes < 2 or stride is None or stride < 1 or (mask is not None and mask.ty.dtype.lanes != lanes):
        return None
    if stride == 1:
        return _zeroing_load(load, ramp.base, lanes, tirx.Broadcast(tirx.const(True, "bool"), lanes)
                             if mask is None else mask)
    if mask is None:
        return _overlapping_pieces(load, ramp.base, stride, lanes)
    pieces = []
    for piece in range(stride):
        whole = tirx.Ramp(tirx.const(piece * lanes, "int32"), 1, lanes)  # lanes t of the whole
        used = tirx.FloorMod(whole, tirx.Broadcast(tirx.const(stride, "int32"), lanes)) == tirx.Broadcast(
            tirx.const(0, "int32"), lanes)
        if mask is not None:
            spread = tirx.Shuffle([mask], [(piece * lanes + t) // stride for t in range(lanes)])
            used = tirx.And(spread, used)
        pieces.append(_zeroing_load(load, ramp.base + piece * lanes, lanes, used))
    return tirx.Shuffle(pieces, [stride * lane for lane in range(lanes)])


def _overlapping_pieces(load: Any, base: Any, stride: int, lanes: int) -> Any:
    """The strided vector load `load` (``Ramp(base, stride, lanes)``, every lane used) as plain
    loads of `lanes` contiguous elements and one shuffle: the loads cover the elements from the
    first lane's to the last lane's and no others (the last load ends at the last lane's element,
    overlapping the one before), so none reads past what the strided load reads, and no mask
    is needed (on the znver3 machine masked loads cost more than plain ones:
    ``benchmarks/results/nchw-interior-*.md``)."""
    from tvm import tirx

    span = stride * (lanes - 1) + 1
    count = -(-span // lanes)
    starts = [min(piece * lanes, span - lanes) for piece in range(count)]
    pieces = [tirx.BufferLoad(load.source, [tirx.Ramp(base + start, 1, lanes)]) for start in starts]
    indices = []
    for lane in range(lanes):
        element = stride * lane
        piece = min(element // lanes, count - 1)
        indices.append(piece * lanes + element - starts[piece])
    return tirx.Shuffle(pieces, indices)


def _stride_two_load(load: Any) -> bool:
    """Whether `load` is a vector load at ``Ramp(base, 2, L)`` (one index, L > 1)."""
    from tvm import tirx
    from tvm.ir import TensorLoad

    return (isinstance(load, TensorLoad) and len(load.indices) == 1 and isinstance(load.indices[0], tirx.Ramp)
            and as_int(load.indices[0].stride) == 2 and load.ty.dtype.lanes > 1)


def _is_zero_vector(expr: Any) -> bool:
    """Whether `expr` is a vector of zeros (``Broadcast`` of a 0 constant)."""
    from tvm import tirx

    return (isinstance(expr, tirx.Broadcast) and isinstance(expr.value, (tirx.FloatImm, tirx.IntImm))
            and expr.value.value == 0)


def _zero_select_load(select: Any) -> bool:
    """Whether `select` is ``Select(mask, load, 0)`` of a vector load at column stride 2."""
    return (select.condition.ty.dtype.lanes > 1 and _stride_two_load(select.true_value)
            and _is_zero_vector(select.false_value))


def _one_mask(side: list) -> tuple[bool, Any]:
    """(whether the loads of `side`, ``[(node, mask or None)]`` at one base, all have the same
    mask; that mask, None for none)."""
    import tvm_ffi

    masks = [mask for _, mask in side]
    same = all((mask is None) == (masks[0] is None) and (mask is None or tvm_ffi.structural_equal(mask, masks[0]))
               for mask in masks)
    return same, masks[0]


def _paired_strided_loads(loop: Any, bindings: dict) -> Any:
    """The innermost loop `loop` with the window loads of column stride 2 that read neighbouring
    taps paired: a load at ``Ramp(b, 2, L)`` and one at ``Ramp(b + 1, 2, L)`` in the same body
    (a window row's first and second tap, masked or not) both become shuffles of the same two
    vectors of L elements from ``b`` (the first tap its even lanes, the second its odd ones),
    which LLVM loads once: four loads per window row of three taps instead of six.

    Each lane of the two vectors is read where the tap that uses it reads it (under its mask,
    with 0 elsewhere; a tap without a mask reads all its lanes): nothing is read that neither
    load read before. `bindings`: the values of TVM's common subexpressions, inlined in the
    shared vectors, which serve statements where different ones are defined. `loop` unchanged
    where nothing pairs."""
    import tvm_ffi
    from tvm import tirx
    from tvm.ir import TensorLoad
    from tvm.sym.analyzer import Analyzer

    nested = []  # an inner loop, or a branch (whose loads may not run where the pair's other one does)
    tvm_ffi.structural_walk(loop.body, (((tirx.For, tirx.IfThenElse), lambda inner: nested.append(inner)),))
    if nested:
        return loop
    selects, loads = [], []
    tvm_ffi.structural_walk(loop.body, ((tirx.Select, lambda select: selects.append(select)
                                         if _zero_select_load(select) else None),
                                        (TensorLoad, lambda load: loads.append(load)
                                         if _stride_two_load(load) else None)))
    masked_loads = [select.true_value for select in selects]
    members = [(select, select.true_value, select.condition) for select in selects]
    members += [(load, load, None) for load in loads if not any(load.same_as(other) for other in masked_loads)]
    if len(members) < 2:
        return loop
    analyzer = Analyzer()

    def inlined(expr):
        return analyzer.simplify(tvm_ffi.structural_map(expr, [(tirx.Var, lambda var: bindings.get(var, var))]))

    groups: list[list] = []  # [rest of the base, load, {constant: [(node, mask or None)]}]
    for node, load, mask in members:
        base = inlined(load.indices[0].base)
        rest, constant = base, 0
        if isinstance(base, tirx.Add) and isinstance(base.b, tirx.IntImm):
            rest, constant = base.a, int(base.b.value)
        elif isinstance(base, tirx.Sub) and isinstance(base.b, tirx.IntImm):
            rest, constant = base.a, -int(base.b.value)
        group = next((group for group in groups if group[1].source.same_as(load.source)
                      and group[1].ty.dtype == load.ty.dtype and tvm_ffi.structural_equal(group[0], rest)), None)
        if group is None:
            group = [rest, load, {}]
            groups.append(group)
        group[2].setdefault(constant, []).append((node, None if mask is None else inlined(mask)))

    replacements: list[tuple] = []  # (member, its shuffle)
    for rest, load, by_constant in groups:
        lanes = load.ty.dtype.lanes
        paired: set = set()
        for constant in sorted(by_constant):
            if constant in paired or constant + 1 not in by_constant:
                continue
            sides = [by_constant[constant], by_constant[constant + 1]]
            (even_same, even_mask), (odd_same, odd_mask) = (_one_mask(side) for side in sides)
            if not (even_same and odd_same):  # one mask a side: its loads read the same elements
                continue
            paired.update((constant, constant + 1))
            first = rest + constant
            pieces = []
            for piece in range(2):
                start = first + piece * lanes
                if even_mask is None and odd_mask is None:
                    pieces.append(tirx.BufferLoad(load.source, [tirx.Ramp(start, 1, lanes)]))
                    continue
                side_masks = [tirx.Broadcast(tirx.const(True, "bool"), lanes) if mask is None else mask
                              for mask in (even_mask, odd_mask)]
                elements = range(piece * lanes, (piece + 1) * lanes)
                spread = tirx.Shuffle(side_masks, [element // 2 + (element % 2) * lanes for element in elements])
                pieces.append(_zeroing_load(load, start, lanes, spread))
            for parity, side in enumerate(sides):
                shuffled = tirx.Shuffle(pieces, [2 * lane + parity for lane in range(lanes)])
                replacements.extend((node, shuffled) for node, _ in side)
    if not replacements:
        return loop

    def replaced(node):
        return next((shuffled for member, shuffled in replacements if node.same_as(member)), node)

    return tvm_ffi.structural_map(loop, [(tirx.Select, replaced), (TensorLoad, replaced)])


INTERIOR_BLOCKS = "dwc.interior_blocks"  # a loop annotation: [first, end) of its iterations


def _all_lanes_true(condition: Any, analyzer: Any) -> bool:
    """Whether `analyzer` proves `condition` (a vector or scalar boolean, its variables bound)
    true in every lane: joined tests each, comparisons of ``Ramp``s and ``Broadcast``s (linear in
    the lane, so true in all lanes when true in the first and the last) in those two lanes."""
    from tvm import tirx

    if isinstance(condition, tirx.And):
        return _all_lanes_true(condition.a, analyzer) and _all_lanes_true(condition.b, analyzer)
    lanes = condition.ty.dtype.lanes
    if lanes == 1:
        return bool(analyzer.can_prove(condition))
    comparisons = (tirx.LT, tirx.LE, tirx.GT, tirx.GE)
    if not isinstance(condition, comparisons):
        return False

    def lane_value(expr, lane):
        if isinstance(expr, tirx.Ramp):
            return expr.base + expr.stride * lane
        return expr.value if isinstance(expr, tirx.Broadcast) else None

    for lane in (0, lanes - 1):
        left, right = lane_value(condition.a, lane), lane_value(condition.b, lane)
        if left is None or right is None or not analyzer.can_prove(type(condition)(left, right)):
            return False
    return True


def _peeled_interior(loop: Any, bindings: dict) -> Any:
    """A loop annotated with :data:`INTERIOR_BLOCKS` ``[first, end)`` (the NCHW column blocks
    whose windows lie inside the input's columns, ``schedules/cpu.py``) as up to three loops,
    over the iterations before `first`, from `first` to `end` and after: in each, every vector
    ``Select`` of a load whose test holds on all its iterations (:func:`_all_lanes_true`;
    `bindings`: the values of TVM's common subexpressions) is the load itself, a plain load where
    the test would have made it a masked one. The interior blocks lose every test, the border
    blocks those of their vectors inside the input. `loop` unchanged where no test is proven."""
    import tvm_ffi
    from tvm import ir, tirx
    from tvm.sym.analyzer import Analyzer

    interior = loop.annotations.get(INTERIOR_BLOCKS) if loop.annotations is not None else None
    start, extent = as_int(loop.min), as_int(loop.extent)
    if interior is None or start is None or extent is None:
        return loop
    stop = start + extent
    first = min(max(int(interior[0]), start), stop)
    end = min(max(int(interior[1]), first), stop)
    parts = []
    for low, high in ((start, first), (first, end), (end, stop)):
        if high > low:
            analyzer = Analyzer()
            analyzer.bind(loop.loop_var, ir.Range.from_min_extent(low, high - low))

            def proven(select, analyzer=analyzer):
                if select.condition.ty.dtype.lanes == 1:
                    return select
                test = tvm_ffi.structural_map(select.condition, [(tirx.Var, lambda var: bindings.get(var, var))])
                return select.true_value if _all_lanes_true(test, analyzer) else select

            parts.append((low, high, tvm_ffi.structural_map(loop.body, [(tirx.Select, proven)])))
    if all(body.same_as(loop.body) for *_, body in parts):
        return loop
    defined = [loop.loop_var]
    tvm_ffi.structural_walk(loop.body, ((tirx.Bind, lambda bind: defined.append(bind.var)),
                                        (tirx.DeclBuffer, lambda decl: defined.append(decl.buffer))))
    loops = []
    for index, (low, high, body) in enumerate(parts):
        # Each copy defines variables and buffers of its own: TVM's analyses and its LLVM code
        # generator take a definition to be unique.
        fresh = {var: tirx.Var(f"{var.name}_{index}", var.ty) for var in defined}
        body = tvm_ffi.structural_map(body, [(tirx.Var, lambda found, fresh=fresh: fresh.get(found, found))])
        var = fresh[loop.loop_var]
        loops.append(tirx.For(var, tirx.const(low, var.ty), tirx.const(high - low, var.ty), loop.kind, body))
    return tirx.SeqStmt(loops) if len(loops) > 1 else loops[0]


def _masked_select(select: Any) -> Any:
    """`select` (a ``tirx.Select``) whose chosen value is a vector load and whose other value is
    0, as that load under its mask (:func:`_masked_vector_load`, which gives 0 in the lanes left
    out), else `select`."""
    if not _is_zero_vector(select.false_value):
        return select
    loaded = _masked_vector_load(select.true_value, select.condition)
    return select if loaded is None else loaded


def _contiguous_pieces(load: Any) -> Any:
    """A strided vector load (stride 2 to :data:`MAX_SHUFFLED_STRIDE`) as contiguous masked loads
    and a shuffle (:func:`_masked_vector_load`), else `load`."""
    from tvm import tirx

    ramp = load.indices[-1]
    if not isinstance(ramp, tirx.Ramp) or not 2 <= (as_int(ramp.stride) or 0) <= MAX_SHUFFLED_STRIDE:
        return load
    pieces = _masked_vector_load(load, None)  # which checks the rest
    return load if pieces is None else pieces


def _refuse_unmasked_selects(body: Any) -> None:
    """Raise where a vector ``Select`` is left that reads memory in a lane it may not choose (its
    value not a bare load, or its other value not 0): the load would read every lane."""
    import tvm_ffi
    from tvm import tirx
    from tvm.ir import TensorLoad

    unmasked = []

    def check(select):
        if select.condition.ty.dtype.lanes > 1:
            reads = []
            tvm_ffi.structural_walk(select, ((TensorLoad, lambda load: reads.append(load)
                                              if load.ty.dtype.lanes > 1 else None),))
            if reads:
                unmasked.append(select)

    tvm_ffi.structural_walk(body, ((tirx.Select, check),))
    if unmasked:
        raise ValueError(f"dwc.MaskedSelectLoads: a vector select reads memory in lanes it may not choose: "
                         f"{str(unmasked[0])[:300]}")


def masked_select_loads():
    """The TIR pass (on lowered PrimFuncs) that peels the interior column blocks off marked loops,
    reads a vector ``Select``'s chosen load under its mask and, on x86 with AVX2 or AVX-512,
    other strided vector loads as contiguous pieces (module docstring)."""
    import tvm
    import tvm_ffi
    from tvm import tirx
    from tvm.ir import TensorLoad

    def rewrite(func, _mod, _ctx):
        cheap = llvm_target_has(func, "avx2")
        bindings = []  # TVM's common subexpressions, found once and only for a function with marked loops

        def peeled(loop):
            if loop.annotations is None or INTERIOR_BLOCKS not in loop.annotations:
                return loop
            if not bindings:
                bindings.append(bindings_of(func.body))
            return _peeled_interior(loop, bindings[0])

        body = tvm_ffi.structural_map(func.body, [(tirx.For, peeled)])
        if cheap:
            peeled_bindings = []  # those of the peeled body, whose copies define their own

            def paired(loop, peeled_body=body):
                if not peeled_bindings:
                    peeled_bindings.append(bindings_of(peeled_body))
                return _paired_strided_loads(loop, peeled_bindings[0])

            body = tvm_ffi.structural_map(body, [(tirx.For, paired)])
        body = tvm_ffi.structural_map(body, [(tirx.Select, _masked_select)])
        _refuse_unmasked_selects(body)
        if cheap:
            body = tvm_ffi.structural_map(body, [(TensorLoad, _contiguous_pieces)])
        return func if body.same_as(func.body) else func.with_body(body)

    return tvm.tirx.transform.prim_func_pass(rewrite, opt_level=0, name="dwc.MaskedSelectLoads")


def _masked_odd_store(store: Any, sixteen_bit: bool, allocated: tuple) -> Any:
    """`store` (a ``tirx.BufferStore``) of a vector of contiguous float elements whose lane count
    is no power of two (a row of 14 or 7 columns) as one masked store of the next power of two
    lanes, else `store`; 16-bit elements only with `sixteen_bit` (AVX512BW's masked stores). The
    value is computed on the whole vector where it reads only buffers in `allocated`
    (:func:`_widened`)."""
    from tvm import tirx
    from tvm.tirx.op import masked_store

    lanes = store.value.ty.dtype.lanes
    element = str(store.value.ty.dtype).split("x")[0]
    if (lanes < 2 or lanes & (lanes - 1) == 0 or len(store.indices) != 1
            or not isinstance(store.indices[0], tirx.Ramp) or as_int(store.indices[0].stride) != 1
            or as_int(store.indices[0].lanes) != lanes
            or element not in ("float32", "float64", *(("float16",) if sixteen_bit else ()))):
        return store
    whole = _power_of_two_at_least(lanes)
    value = _widened(store.value, whole, allocated)
    if value is None:
        # A shuffle has at most its inputs' lanes: the value twice, its last lane repeated to fill.
        value = tirx.Shuffle([store.value, store.value], [min(lane, lanes - 1) for lane in range(whole)])
    return tirx.Evaluate(masked_store(store.buffer, value, tirx.Ramp(store.indices[0].base, 1, whole),
                                      _lanes_mask(whole, lanes)))


def _widened(value: Any, whole: int, allocated: tuple) -> Any:
    """`value` (a float vector expression of an odd-width row store) computed on `whole` lanes,
    its first lanes the same, or None where a part of it cannot be. It may hold: loads of
    contiguous lanes at a constant index of a buffer the kernel allocates itself (one of
    `allocated`) that holds `whole` elements from there (in dwc's schedules the register
    tile's sums, rounded up to whole vectors: the lanes added are read, never stored, and lie
    in the buffer, where past an argument's end they might not), broadcasts, and float
    element-wise arithmetic and casts.

    Shuffled to whole lanes from the odd width instead, a fused epilogue's ``max``/``min`` over
    the row made LLVM narrow the whole window sum to the odd width, and with it the loads the
    sums share across rows: their live ranges then spilled (14x14 planes, bias + ReLU6)."""
    from tvm import tirx
    from tvm.ir import TensorLoad

    lanes = value.ty.dtype.lanes
    if lanes == 1:
        return value
    if not str(value.ty.dtype).startswith("float"):
        return None
    if isinstance(value, tirx.Broadcast):
        return tirx.Broadcast(value.value, whole)
    if isinstance(value, TensorLoad):
        ramp = value.indices[-1] if len(value.indices) == 1 else None
        base = as_int(ramp.base) if isinstance(ramp, tirx.Ramp) and as_int(ramp.stride) == 1 else None
        extents = [as_int(extent) for extent in value.source.shape]
        if (base is None or None in extents or base + whole > math.prod(extents)
                or not any(value.source.same_as(buffer) for buffer in allocated)):
            return None
        return tirx.BufferLoad(value.source, [tirx.Ramp(ramp.base, 1, whole)])
    if isinstance(value, tirx.Cast):
        inner = _widened(value.value, whole, allocated)
        return None if inner is None else tirx.Cast(f"{str(value.ty.dtype).split('x')[0]}x{whole}", inner)
    if isinstance(value, (tirx.Add, tirx.Sub, tirx.Mul, tirx.Div, tirx.Min, tirx.Max)):
        a, b = _widened(value.a, whole, allocated), _widened(value.b, whole, allocated)
        if a is None or b is None:
            return None
        intrinsic = _X86_MIN_MAX.get((type(value).__name__, str(a.ty.dtype)))
        if intrinsic is not None:
            name, *extra = intrinsic
            return tirx.call_llvm_pure_intrin(str(a.ty.dtype), name, a, b, *(tirx.const(e, "int32") for e in extra))
        return type(value)(a, b)
    return None


# x86's min and max of float vectors, as LLVM intrinsics (and their rounding argument: 4, the
# current direction). TVM writes ``min(a, b)`` as ``a < b ? a : b`` and ``max`` as ``a > b ? a : b``,
# which is what MINPS/MAXPS compute, NaN and signed zeros included. Under a masked store LLVM
# takes the masked-off lanes of such a select's bound as free, and no longer matched the select
# to one instruction: a compare and a blend for each ``min``.
_X86_MIN_MAX = {
    (kind, f"{element}x{lanes}"): (f"llvm.x86.{isa}.{kind.lower()}.{suffix}", *extra)
    for kind in ("Min", "Max")
    for element, lanes, isa, suffix, extra in (
        ("float32", 16, "avx512", "ps.512", (4,)), ("float64", 8, "avx512", "pd.512", (4,)),
        ("float32", 8, "avx", "ps.256", ()), ("float64", 4, "avx", "pd.256", ()),
        ("float32", 4, "sse", "ps", ()), ("float64", 2, "sse2", "pd", ()))}


def masked_odd_stores():
    """The TIR pass (on lowered PrimFuncs) that makes vector stores of a lane count that is no power
    of two one k-masked store on AVX-512 (module docstring); other targets are left alone."""
    import tvm
    import tvm_ffi
    from tvm import tirx

    def rewrite(func, _mod, _ctx):
        if not llvm_target_has(func, "avx512f"):
            return func
        sixteen_bit = llvm_target_has(func, "avx512bw")
        allocations = []
        tvm_ffi.structural_walk(func.body, ((tirx.AllocBuffer, lambda node: allocations.append(node.buffer)),))
        allocated = tuple(allocations)  # compared with same_as: the buffers themselves
        body = tvm_ffi.structural_map(func.body, [(tirx.BufferStore, lambda store: _masked_odd_store(
            store, sixteen_bit, allocated))])
        return func if body.same_as(func.body) else func.with_body(body)

    return tvm.tirx.transform.prim_func_pass(rewrite, opt_level=0, name="dwc.MaskedOddStores")


def cpu_pipeline():
    """TVM's default TIR pipeline followed by :func:`deinterleave_copies`,
    :func:`masked_select_loads`, ``tir_lane_order.sums_in_lane_order`` and
    :func:`masked_odd_stores`, as a TIR pipeline factory
    (``(pipeline, finalize_host_passes, finalize_device_passes)``)."""
    import tvm
    from tvm.tirx import get_tir_pipeline

    pipeline, finalize_host, finalize_device = get_tir_pipeline("default")
    passes = [pipeline, deinterleave_copies(), masked_select_loads(), sums_in_lane_order(), masked_odd_stores()]
    return tvm.transform.Sequential(passes, name="dwc.CpuPipeline"), finalize_host, finalize_device


def register_cpu_pipeline() -> str:
    """Register :func:`cpu_pipeline` with TVM (idempotent); its name, for ``tvm.compile``'s ``tir_pipeline``."""
    from tvm.tirx import register_tir_pipeline

    register_tir_pipeline(PIPELINE_NAME, cpu_pipeline)
    return PIPELINE_NAME
