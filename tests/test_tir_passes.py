"""dwc's TIR passes (dwc_compiler/tir_passes.py): the strided copies it rewrites and the vector
selects of loads it masks, and that the rewritten code computes what TVM's did, reading nothing
it should not."""

import numpy as np
import pytest

from dwc_compiler.tir_passes import (CHUNK_LANES, deinterleave_copies, masked_odd_stores, masked_select_loads,
                                    register_cpu_pipeline)


def _copy_loop(extent: int, stride: int, write_step: int = 1, same_buffer: bool = False, phase_gap: int = 0):
    """A PrimFunc of one serial loop ``for g: out[b_p + write_step * g] = input[a + stride * g + p]``
    (one store per phase p, b_p = 5 + p * (extent + 2) unless `phase_gap` says otherwise), as
    TVM's lowering leaves the strided plane copy."""
    import tvm
    from tvm import tirx

    size = 4 * extent * stride + 64
    source = tirx.decl_buffer((size,), "float32", name="source")
    target = source if same_buffer else tirx.decl_buffer((size,), "float32", name="target")
    g = tirx.Var("g", "int32")
    stores = [tirx.BufferStore(target, tirx.BufferLoad(source, [g * stride + 3 + phase]),
                               [g * write_step + 5 + phase * (phase_gap or extent + 2)]) for phase in range(stride)]
    loop = tirx.For(g, tirx.const(0, "int32"), tirx.const(extent, "int32"), tirx.ForKind.SERIAL,
                    tirx.SeqStmt(stores) if len(stores) > 1 else stores[0])
    func = tirx.PrimFunc([source] if same_buffer else [source, target], loop)  # buffers are parameters
    return tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), size


def _count(mod, node_type, where=None) -> int:
    """How many nodes of `node_type` (those for which `where` holds, if given) `mod`'s main holds."""
    import tvm_ffi

    found = []
    tvm_ffi.structural_walk(mod["main"], ((node_type, lambda node: found.append(node)
                                           if where is None or where(node) else None),))
    return len(found)


@pytest.mark.parametrize("extent, stride", [(7, 2), (14, 2), (16, 2), (17, 2), (28, 2), (33, 2), (56, 2), (5, 3)])
def test_strided_copy_becomes_shuffles_and_copies_the_same(extent, stride):
    """A copy of `extent` pairs (triples) becomes one vector load and one shuffle per phase for
    each chunk of CHUNK_LANES output lanes (and the rest), and the compiled function writes what
    the scalar loop wrote, nothing else."""
    import tvm
    from tvm import tirx

    mod, size = _copy_loop(extent, stride)
    rewritten = deinterleave_copies()(mod)
    # One chunk body for the whole chunks (a loop over them when there are several), one for the
    # rest; a rest of one pair stays scalar.
    chunk_bodies = (1 if extent >= CHUNK_LANES else 0) + (1 if extent % CHUNK_LANES > 1 else 0)
    assert _count(rewritten, tirx.Shuffle) == stride * chunk_bodies
    assert _count(rewritten, tirx.For) == (1 if extent >= 2 * CHUNK_LANES else 0)

    lib = tvm.compile(mod, target={"kind": "llvm"}, tir_pipeline=register_cpu_pipeline())
    assert "shufflevector" in lib.mod.inspect_source("ll")  # the pass ran in the pipeline
    _check_copy(lib, size, extent, stride)


def _check_copy(lib, size: int, extent: int, stride: int) -> None:
    """`lib`'s main writes what the scalar loop of :func:`_copy_loop` wrote, nothing else."""
    import tvm

    source = np.arange(size, dtype=np.float32)
    target = tvm.runtime.tensor(np.full(size, -1.0, np.float32))
    lib["main"](tvm.runtime.tensor(source), target)
    expected = np.full(size, -1.0, np.float32)
    for g in range(extent):
        for phase in range(stride):
            expected[g + 5 + phase * (extent + 2)] = source[g * stride + 3 + phase]
    np.testing.assert_array_equal(target.numpy(), expected)


LEFT_AS_THEY_ARE = {
    "one pair": {"extent": 1},
    "strided write": {"write_step": 2},
    "one store": {"stride": 1},
    "same buffer": {"same_buffer": True},
    "overlapping phases": {"phase_gap": 6},  # phase 1 writes over phase 0's last lane, later in the loop
}


@pytest.mark.parametrize("extent, stride", [(7, 2), (14, 2), (17, 2), (28, 2), (5, 3)])
def test_masked_last_chunk_on_avx512_copies_the_same(extent, stride):
    """On AVX-512 the last chunk (fewer than CHUNK_LANES output lanes) loads and stores whole
    vectors under a mask: the same result, nothing written past the copy."""
    import tvm

    from helpers import skip_unless_this_cpu_runs

    skip_unless_this_cpu_runs("x86-avx512")
    mod, size = _copy_loop(extent, stride)
    lib = tvm.compile(mod, target={"kind": "llvm", "mcpu": "skylake-avx512"}, tir_pipeline=register_cpu_pipeline())
    if extent % CHUNK_LANES > 1:  # a rest of one pair stays scalar
        assert "llvm.masked.store" in lib.mod.inspect_source("ll")
    _check_copy(lib, size, extent, stride)


@pytest.mark.parametrize("case", LEFT_AS_THEY_ARE)
def test_other_loops_are_left_as_they_are(case):
    """Loops that are not a contiguous write of a strided read (a strided write, a plain copy, a
    copy within one buffer), or whose phases write over each other, come out of the pass unchanged."""
    import tvm_ffi

    mod, _ = _copy_loop(**{"extent": 7, "stride": 2, **LEFT_AS_THEY_ARE[case]})
    assert tvm_ffi.structural_equal(deinterleave_copies()(mod), mod)


def test_nchw_stride2_kernel_copies_with_shuffles(monkeypatch):
    """dwc's NCHW stride-2 kernels that copy planes (x86 ones made to, as ARM's and AVX2's
    float16 ones do) are compiled with the pass: the plane copy of 14x14x576-s2 reaches LLVM as vector
    shuffles of whole input vectors (on AVX-512, one masked vector)."""
    import dwc_compiler as dwc

    from dwc_compiler import toolchain
    from dwc_compiler.schedules import x86

    monkeypatch.setattr(x86, "masked_loads_cheap", lambda spec, target: False)
    spec = dwc.DepthwiseSpec.create((1, 576, 14, 14), (3, 3, 576, 1), [2, 2], "SAME", "NCHW")
    ir = dwc.build(spec, "x86-avx512", use_records=False).inspect_source("ll")
    # The 7 even (odd) columns of a row: one masked 8-lane store each, from one masked 16-lane load.
    assert "@llvm.masked.store.v8f32" in ir and "shufflevector <16 x float>" in ir
    ir = dwc.build(spec, "x86-avx2", use_records=False).inspect_source("ll")
    assert "shufflevector <14 x float>" in ir  # without AVX-512's masks: the 14 pairs' vector as it is
    monkeypatch.setattr(toolchain, "register_cpu_pipeline", lambda: "default")  # TVM's pipeline alone
    ir = dwc.build(spec, "x86-avx512", use_records=False).inspect_source("ll")
    assert "@llvm.masked.store.v8f32" not in ir and "shufflevector <14 x float>" not in ir


# NCHW at column stride 2: rows of 7 and 14 pairs (one chunk and its rest), 20 (a chunk of 16 and
# 4 more), 17 (one pair more), an odd width (a pair half in the padding), and a channel multiplier.
STRIDED_NCHW = [
    ((1, 16, 14, 14), (3, 3, 16, 1), 2, "SAME", "float32"),
    ((1, 8, 28, 28), (3, 3, 8, 1), 2, "SAME", "float32"),
    ((1, 4, 9, 40), (3, 3, 4, 1), 2, "VALID", "float32"),
    ((1, 4, 10, 34), (3, 3, 4, 1), 2, "SAME", "float32"),  # 17 pairs: a chunk and one pair alone
    ((2, 6, 11, 15), (3, 3, 6, 2), (1, 2), "SAME", "float32"),
    ((1, 16, 14, 14), (3, 3, 16, 1), 2, "SAME", "float64"),
    ((1, 16, 14, 14), (3, 3, 16, 1), 2, "SAME", "float16"),
]


@pytest.mark.parametrize("target", ["host", "x86-avx2", "aarch64-neon"])
@pytest.mark.parametrize("case", STRIDED_NCHW, ids=[f"{c[0]}-s{c[2]}-{c[4]}" for c in STRIDED_NCHW])
def test_nchw_kernels_with_strided_copies_match_the_reference(case, target, monkeypatch, request):
    """The stride-2 NCHW kernels with a plane copy, which the pass rewrites, against the float64
    reference on every CPU target (aarch64 under qemu; the x86 ones made to copy, as they do for
    float16 on AVX2 and for Relax models)."""
    from helpers import check_against_reference, skip_unless_this_cpu_runs

    import dwc_compiler as dwc
    from dwc_compiler.schedules import x86

    monkeypatch.setattr(x86, "masked_loads_cheap", lambda spec, target: False)
    dwc.clear_kernel_cache()  # no cached kernel of the same spec with masked windows
    request.addfinalizer(dwc.clear_kernel_cache)  # nor one with the copy for later tests

    input_shape, filter_shape, strides, padding, dtype = case
    if target != "aarch64-neon":  # which runs under qemu-user
        skip_unless_this_cpu_runs(target)
    check_against_reference(input_shape, filter_shape, strides, padding, "NCHW", dtype=dtype, target=target)


def _select_of_load(lanes: int, stride: int = 1):
    """A PrimFunc ``out[0:lanes] = Select(ramp >= 1 and ramp < lanes - 1, input[ramp * stride], 0)``."""
    import tvm
    from tvm import tirx

    source = tirx.decl_buffer((lanes * stride,), "float32", name="source")
    target = tirx.decl_buffer((lanes,), "float32", name="target")
    ramp = tirx.Ramp(tirx.const(0, "int32"), 1, lanes)
    inside = tirx.And(ramp >= tirx.Broadcast(tirx.const(1, "int32"), lanes),
                      ramp < tirx.Broadcast(tirx.const(lanes - 1, "int32"), lanes))
    value = tirx.Select(inside, tirx.BufferLoad(source, [tirx.Ramp(tirx.const(0, "int32"), stride, lanes)]),
                        tirx.Broadcast(tirx.const(0, "float32"), lanes))
    func = tirx.PrimFunc([source, target], tirx.BufferStore(target, value, [ramp]))
    return tvm.IRModule({"main": func.with_attr("global_symbol", "main")})


def _masked_loads(mod) -> int:
    """How many ``llvm.masked.load`` calls `mod`'s main makes."""
    import tvm

    intrinsic = tvm.target.codegen.llvm_lookup_intrinsic_id("llvm.masked.load")
    return _count(mod, tvm.ir.Call, lambda call: call.op.same_as(tvm.ir.Op.get("tirx.call_llvm_intrin"))
                  and int(call.args[0].value) == intrinsic)


def test_vector_select_of_a_load_is_loaded_under_its_mask():
    """A vector Select of 0 and a contiguous load becomes one masked load with a zero
    pass-through (no Select left); of a strided load (stride s), s contiguous masked loads and a
    shuffle."""
    from tvm import tirx

    for lanes, stride, loads in ((16, 1, 1), (16, 2, 2), (8, 3, 3)):
        rewritten = masked_select_loads()(_select_of_load(lanes, stride))
        assert _masked_loads(rewritten) == loads
        assert _count(rewritten, tirx.Select) == 0
        assert "T.Broadcast(T.float32(0.0)" in rewritten.script()  # the pass-through


def test_vector_select_it_cannot_mask_is_refused():
    """A vector Select whose chosen value reads memory but is no bare load (a load times 2) would
    read every lane: the pass refuses it rather than leave it."""
    import tvm
    from tvm import tirx

    source = tirx.decl_buffer((16,), "float32", name="source")
    target = tirx.decl_buffer((16,), "float32", name="target")
    ramp = tirx.Ramp(tirx.const(0, "int32"), 1, 16)
    scaled = tirx.BufferLoad(source, [ramp]) * tirx.Broadcast(tirx.const(2, "float32"), 16)
    value = tirx.Select(ramp >= tirx.Broadcast(tirx.const(1, "int32"), 16), scaled,
                        tirx.Broadcast(tirx.const(0, "float32"), 16))
    func = tirx.PrimFunc([source, target], tirx.BufferStore(target, value, [ramp])).with_attr("global_symbol", "main")
    with pytest.raises(Exception, match="reads memory in lanes it may not choose"):
        masked_select_loads()(tvm.IRModule({"main": func}))


@pytest.mark.parametrize("target", ["x86-avx512", "x86-avx2"])
def test_nchw_kernels_load_windows_under_masks(target):
    """The x86 NCHW kernels load window rows from the input under masks (14x14x384-s1: 16-lane
    rows of 14 columns); at column stride 2 (28x28x192-s2: 14 outputs a row) two contiguous
    masked loads a window row, and a shuffle that picks the even lanes: in column order on
    AVX-512, in the order of an in-lane pick on AVX2 (``tir_lane_order``)."""
    import dwc_compiler as dwc

    lanes = 16 if target == "x86-avx512" else 8
    spec = dwc.DepthwiseSpec.create((1, 384, 14, 14), (3, 3, 384, 1), 1, "SAME", "NCHW")
    ir = dwc.build(spec, target, use_records=False).inspect_source("ll")
    assert f"@llvm.masked.load.v{lanes}f32" in ir
    strided = dwc.DepthwiseSpec.create((1, 192, 28, 28), (3, 3, 192, 1), 2, "SAME", "NCHW")
    ir = dwc.build(strided, target, use_records=False).inspect_source("ll")
    # the even lanes of the two loads (LLVM leaves the lanes of columns past the row's 14 poison)
    picked = range(lanes // 2 + 1) if target == "x86-avx512" else (0, 1, 4, 5)  # AVX2: lane_order(8, 4)
    even = ", ".join(f"i32 {2 * column}" for column in picked)
    assert f"@llvm.masked.load.v{lanes}f32" in ir and f"<{lanes} x i32> <{even}, " in ir


def _contiguous_loads(mod) -> int:
    """How many contiguous vector loads (``Ramp`` of stride 1) `mod`'s main makes."""
    import tvm
    from tvm import tirx

    return _count(mod, tvm.ir.TensorLoad, lambda load: isinstance(load.indices[-1], tirx.Ramp)
                  and int(load.indices[-1].stride) == 1)


def test_strided_vector_loads_become_contiguous_pieces_on_x86_only():
    """A strided vector load outside any Select, whose every lane is used, becomes plain
    contiguous loads (the last ending at its last element: 1..16 and 16..31 for elements 1, 3, ..,
    31) and a shuffle for an x86 target with AVX2, and is left alone for others."""
    import tvm
    from tvm import tirx

    source = tirx.decl_buffer((64,), "float32", name="source")
    target = tirx.decl_buffer((16,), "float32", name="target")
    ramp = tirx.Ramp(tirx.const(0, "int32"), 1, 16)
    body = tirx.BufferStore(target, tirx.BufferLoad(source, [tirx.Ramp(tirx.const(1, "int32"), 2, 16)]), [ramp])
    func = tirx.PrimFunc([source, target], body).with_attr("global_symbol", "main")
    for target_dict, pieces in (({"kind": "llvm", "mcpu": "haswell"}, 2),
                                ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}, 0)):
        mod = tvm.IRModule({"main": func.with_attr("target", tvm.target.Target(target_dict))})
        rewritten = masked_select_loads()(mod)
        assert _masked_loads(rewritten) == 0
        assert _contiguous_loads(rewritten) == pieces
        assert _count(rewritten, tirx.Shuffle, lambda shuffle: True) == (1 if pieces else 0)
        bases = sorted(int(load.indices[-1].base.value) for load in _loads(rewritten) if pieces)
        assert bases == ([1, 16] if pieces else [])


def _loads(mod) -> list:
    """The vector loads of `mod`'s main."""
    import tvm_ffi
    from tvm.ir import TensorLoad

    found = []
    tvm_ffi.structural_walk(mod["main"].body, ((TensorLoad, lambda load: found.append(load)
                                                 if load.ty.dtype.lanes > 1 else None),))
    return found


def _blocks_of_a_padded_row(blocks: int, interior: tuple[int, int]):
    """A PrimFunc over a row of ``8 * blocks - 2`` inputs: ``for b in range(blocks)`` (annotated
    with the `interior` blocks) stores, for each of the 8 lanes t, ``input[8b + t - 1]`` where
    that column lies inside the row and 0 elsewhere (a window tap of an NCHW row padded by one
    column on either side), as the x86 schedule's vector Select of a load."""
    import tvm
    from tvm import tirx

    from dwc_compiler.tir_passes import INTERIOR_BLOCKS

    width = 8 * blocks - 2
    source = tirx.decl_buffer((width,), "float32", name="source")
    result = tirx.decl_buffer((8 * blocks,), "float32", name="result")
    block = tirx.Var("b", "int32")
    columns = tirx.Ramp(block * 8 - 1, 1, 8)
    inside = tirx.And(columns >= tirx.Broadcast(tirx.const(0, "int32"), 8),
                      columns < tirx.Broadcast(tirx.const(width, "int32"), 8))
    value = tirx.Select(inside, tirx.BufferLoad(source, [columns]), tirx.Broadcast(tirx.const(0, "float32"), 8))
    store = tirx.BufferStore(result, value, [tirx.Ramp(block * 8, 1, 8)])
    loop = tirx.For(block, tirx.const(0, "int32"), tirx.const(blocks, "int32"), tirx.ForKind.SERIAL, store,
                    annotations={INTERIOR_BLOCKS: list(interior)})
    func = tirx.PrimFunc([source, result], loop).with_attr("global_symbol", "main")
    return tvm.IRModule({"main": func.with_attr("target", tvm.target.Target({"kind": "llvm", "mcpu": "haswell"}))})


def test_interior_blocks_get_a_loop_with_plain_loads():
    """The blocks of an annotated loop between `first` and `end` get a loop of their own whose
    Select is proven true and gone (a plain load); the border blocks keep their masked load; the
    loops cover every block once."""
    import tvm_ffi
    from tvm import tirx

    rewritten = masked_select_loads()(_blocks_of_a_padded_row(6, (1, 5)))
    loops = []
    tvm_ffi.structural_walk(rewritten["main"].body, ((tirx.For, lambda loop: loops.append(loop)),))
    extents = sorted((int(loop.min), int(loop.extent)) for loop in loops)
    assert extents == [(0, 1), (1, 4), (5, 1)]
    assert _masked_loads(rewritten) == 2  # one in each border loop
    assert _count(rewritten, tirx.Select, lambda select: True) == 0
    assert _contiguous_loads(rewritten) == 1  # the interior's


@pytest.mark.parametrize("interior", [(1, 5), (0, 6), (2, 2), (3, 9)])
def test_peeled_blocks_compute_what_masked_ones_did(interior):
    """Compiled with dwc's pipeline (on this CPU) for any interior range the schedule may give,
    the row's blocks hold the input's columns and the padding's zeros: a range that is too wide
    keeps the tests it cannot prove, an empty one changes nothing."""
    import tvm

    from dwc_compiler.tir_passes import register_cpu_pipeline
    from helpers import skip_unless_this_cpu_runs

    skip_unless_this_cpu_runs("x86-avx2")
    mod = _blocks_of_a_padded_row(6, interior)
    lib = tvm.compile(mod, target=mod["main"].attrs["target"], tir_pipeline=register_cpu_pipeline())
    values = np.arange(1, 47, dtype=np.float32)
    output = tvm.runtime.tensor(np.full(48, -1, np.float32))
    lib["main"](tvm.runtime.tensor(values), output)
    np.testing.assert_array_equal(output.numpy(), np.concatenate([[0], values, [0]]))


def _stride_two_window_row(blocks: int, masked: bool, branch: bool = False):
    """A PrimFunc over a row of inputs: ``for b in range(blocks)`` stores, for each of 8 lanes t,
    the sum over the taps d = 0, 1, 2 of ``10^d input[2 (8b + t) + d - 1]`` (`masked`: a row of
    ``16 * blocks - 1`` inputs padded by one column, 0 outside it, each tap under the ``Select``
    of its columns' test) or of ``input[2 (8b + t) + d]`` (a row of ``16 * blocks + 1``, bare
    loads): an NCHW window row at column stride 2, each tap a stride-2 vector load; the taps in
    one statement or (`branch`) the last two in an ``if`` of their own."""
    import tvm
    from tvm import tirx

    width = 16 * blocks - 1 if masked else 16 * blocks + 1
    source = tirx.decl_buffer((width,), "float32", name="source")
    result = tirx.decl_buffer((8 * blocks,), "float32", name="result")
    block = tirx.Var("b", "int32")

    def tap(offset):
        columns = tirx.Ramp(block * 16 + offset - (1 if masked else 0), 2, 8)
        load = tirx.BufferLoad(source, [columns])
        weight = tirx.Broadcast(tirx.const(10.0 ** offset, "float32"), 8)  # which tap gave what
        if not masked:
            return load * weight
        inside = tirx.And(columns >= tirx.Broadcast(tirx.const(0, "int32"), 8),
                          columns < tirx.Broadcast(tirx.const(width, "int32"), 8))
        return tirx.Select(inside, load, tirx.Broadcast(tirx.const(0, "float32"), 8)) * weight

    out = tirx.Ramp(block * 8, 1, 8)
    if branch:
        body = tirx.SeqStmt([tirx.BufferStore(result, tap(0), [out]),
                             tirx.IfThenElse(block >= 0, tirx.BufferStore(result, tirx.BufferLoad(result, [out])
                                                                          + tap(1) + tap(2), [out]), None)])
    else:
        body = tirx.BufferStore(result, tap(0) + tap(1) + tap(2), [out])
    loop = tirx.For(block, tirx.const(0, "int32"), tirx.const(blocks, "int32"), tirx.ForKind.SERIAL, body)
    func = tirx.PrimFunc([source, result], loop).with_attr("global_symbol", "main")
    return tvm.IRModule({"main": func.with_attr("target", tvm.target.Target({"kind": "llvm", "mcpu": "haswell"}))})


def _load_starts(mod) -> set:
    """The distinct first indices of the vector loads and masked loads of `mod`'s buffer ``source``."""
    import tvm
    import tvm_ffi
    from tvm import tirx
    from tvm.ir import TensorLoad

    starts = set()
    intrinsic = tvm.target.codegen.llvm_lookup_intrinsic_id("llvm.masked.load")

    def seen_load(load):
        if load.ty.dtype.lanes > 1 and isinstance(load.indices[-1], tirx.Ramp) and load.source.name == "source":
            starts.add(str(load.indices[-1].base))

    def seen_call(call):
        if call.op.same_as(tvm.ir.Op.get("tirx.call_llvm_intrin")) and int(call.args[0].value) == intrinsic:
            starts.add(str(call.args[1].args[0].indices[0]))  # address_of(source[first])

    tvm_ffi.structural_walk(mod["main"].body, ((TensorLoad, seen_load), (tvm.ir.Call, seen_call)))
    return starts


@pytest.mark.parametrize("masked", [False, True])
def test_neighbouring_stride_two_taps_share_their_loads(masked):
    """A window row's first and second taps (loads at 2i - 1 and 2i) become shuffles of the same
    two vectors, even lanes and odd: the row loads from 4 places instead of 6, masked where the
    taps were; taps in different branches are not paired."""
    from tvm import tirx

    rewritten = masked_select_loads()(_stride_two_window_row(3, masked))
    assert len(_load_starts(rewritten)) == 4
    assert _count(rewritten, tirx.Select, lambda select: True) == 0
    assert (_masked_loads(rewritten) > 0) == masked
    shuffles = []
    _count(rewritten, tirx.Shuffle, lambda shuffle: shuffles.append([int(index) for index in shuffle.indices]))
    lanes = [indices for indices in shuffles if len(indices) == 8 and len(set(indices)) == 8]
    assert [0, 2, 4, 6, 8, 10, 12, 14] in lanes and [1, 3, 5, 7, 9, 11, 13, 15] in lanes
    assert len(_load_starts(masked_select_loads()(_stride_two_window_row(3, masked, branch=True)))) == 6


@pytest.mark.parametrize("masked", [False, True])
def test_paired_stride_two_taps_compute_the_window_row(masked):
    """Compiled with dwc's pipeline on this CPU, the row with its taps paired sums each window's
    columns, each tap's own (weighted apart), 0 for the padding."""
    import tvm

    from dwc_compiler.tir_passes import register_cpu_pipeline
    from helpers import skip_unless_this_cpu_runs

    skip_unless_this_cpu_runs("x86-avx2")
    blocks = 3
    mod = _stride_two_window_row(blocks, masked)
    lib = tvm.compile(mod, target=mod["main"].attrs["target"], tir_pipeline=register_cpu_pipeline())
    values = np.arange(1, (16 * blocks - 1 if masked else 16 * blocks + 1) + 1, dtype=np.float32)
    output = tvm.runtime.tensor(np.full(8 * blocks, -1, np.float32))
    lib["main"](tvm.runtime.tensor(values), output)
    row = np.concatenate([[0], values, [0]]) if masked else values  # the padding's zeros around it
    expected = row[0:16 * blocks:2] + 10 * row[1:16 * blocks:2] + 100 * row[2:16 * blocks + 1:2]
    np.testing.assert_array_equal(output.numpy(), expected)


GUARDED_RUN = """
import ctypes, mmap, sys
import numpy as np
import dwc_compiler as dwc

mode, dtype, target = sys.argv[1], np.dtype(sys.argv[2]), sys.argv[3]
page = mmap.PAGESIZE
libc = ctypes.CDLL(None, use_errno=True)
regions = []


def guarded(shape):
    # An array that ends where its last page ends, an unmapped page after it (and before its
    # first page, which it starts when it fills whole pages).
    size = int(np.prod(shape)) * dtype.itemsize
    pages = -(-size // page)
    region = mmap.mmap(-1, (pages + 2) * page)
    regions.append(region)
    base = ctypes.addressof(ctypes.c_char.from_buffer(region))
    for guard in (base, base + (pages + 1) * page):
        assert libc.mprotect(ctypes.c_void_p(guard), page, 0) == 0  # PROT_NONE
    offset = page + pages * page - size
    return np.frombuffer(region, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)


if mode in ("depthwise", "separable"):  # an NCHW kernel; its input fills whole pages
    stride, padding = int(sys.argv[4]), sys.argv[5]
    padding = [[0, 0], [0, 0], [1, 1], [1, 1]] if padding == "explicit" else padding
    shape = (1, 16, 16, 16)
    data = guarded(shape)
    data[...] = np.random.default_rng(0).random(shape).astype(dtype)
    weights = [np.random.default_rng(1).random((3, 3, 16, 1)).astype(dtype)]
    if mode == "depthwise":
        spec = dwc.DepthwiseSpec.create(shape, weights[0].shape, stride, padding, "NCHW", dtype=str(dtype))
    else:
        weights.append(np.random.default_rng(2).random((1, 1, 16, 8)).astype(dtype))
        spec = dwc.SeparableSpec.create(shape, weights[0].shape, weights[1].shape, stride, padding, "NCHW",
                                        dtype=str(dtype))
    out = guarded(spec.output_shape)
    dwc.build(spec, target).call(data, *weights, out=out)
    expected = spec.reference(data, *weights)
else:  # a stride-2 vector load of elements 1, 3, .. 31 of a 32-element buffer
    import tvm
    from tvm import tirx
    from dwc_compiler.tir_passes import register_cpu_pipeline

    source = tirx.decl_buffer((32,), "float32", name="source")
    result = tirx.decl_buffer((16,), "float32", name="result")
    ramp = tirx.Ramp(tirx.const(0, "int32"), 1, 16)
    body = tirx.BufferStore(result, tirx.BufferLoad(source, [tirx.Ramp(tirx.const(1, "int32"), 2, 16)]), [ramp])
    mod = tvm.IRModule({"main": tirx.PrimFunc([source, result], body).with_attr("global_symbol", "main")})
    lib = tvm.compile(mod, target=dwc.targets.resolve_target(target).tvm(), tir_pipeline=register_cpu_pipeline())
    assert "@llvm.masked.load" not in lib.mod.inspect_source("ll")  # plain loads, the last ending at 31
    values = guarded((32,))
    values[...] = np.arange(32, dtype=dtype)
    out = np.zeros(16, dtype)
    output = tvm.runtime.tensor(out)
    lib["main"](tvm.runtime.from_dlpack(values), output)
    out, expected = output.numpy(), values[1::2]
tolerance = 2e-2 if dtype == np.float16 else 1e-5
assert np.allclose(out, expected, rtol=tolerance, atol=tolerance), np.abs(out - expected).max()
print("ok")
"""


def _run_guarded(tmp_path, *arguments: str) -> None:
    """GUARDED_RUN in a child process (a fault is a failure, not a crash of the test run)."""
    import subprocess
    import sys

    script = tmp_path / "guarded.py"
    script.write_text(GUARDED_RUN)
    run = subprocess.run([sys.executable, str(script), *arguments], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip() == "ok", (run.returncode, run.stderr[-2000:])


@pytest.mark.parametrize("op, stride, padding", [
    ("depthwise", 1, "SAME"), ("depthwise", 2, "SAME"), ("depthwise", 2, "explicit"), ("depthwise", 3, "explicit"),
    ("depthwise", 4, "explicit"), ("depthwise", 1, "VALID"), ("separable", 1, "SAME"), ("separable", 2, "explicit")])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("target", ["host", "x86-avx2"])
def test_nchw_kernels_touch_nothing_outside_their_arrays(op, dtype, target, stride, padding, tmp_path):
    """An NCHW input that fills whole pages and an output that ends where a page does, an unmapped
    page on either side: the kernel (depthwise or separable; whose windows reach one column before
    the first element and past the last, at column strides 1 to 4, and whose rows are stored as
    whole vectors under masks) touches nothing there, and computes the reference."""
    from helpers import skip_unless_this_cpu_runs

    skip_unless_this_cpu_runs(target)
    _run_guarded(tmp_path, op, dtype, target, str(stride), padding)


@pytest.mark.parametrize("target", ["host", "x86-avx2"])
def test_strided_vector_load_reads_only_its_elements(target, tmp_path):
    """Compiled, a stride-2 vector load of elements 1, 3, .. 31 of a 32-element buffer that ends
    where a page does, an unmapped page after it, reads what the lane-by-lane load did and
    nothing past element 31."""
    from helpers import skip_unless_this_cpu_runs

    skip_unless_this_cpu_runs(target)
    _run_guarded(tmp_path, "load", "float32", target)


# NCHW at column stride 1: 14-, 7- and 56-wide rows (one vector and its padding lanes, half a
# vector, several), an odd width, VALID and explicit padding, a dilation, a multiplier, a batch.
MASKED_NCHW = [
    ((1, 16, 14, 14), (3, 3, 16, 1), 1, "SAME", "float32", None),
    ((1, 8, 7, 7), (3, 3, 8, 1), 1, "SAME", "float32", None),
    ((1, 4, 56, 56), (3, 3, 4, 1), 1, "SAME", "float32", None),
    ((1, 4, 9, 13), (5, 5, 4, 1), 1, "SAME", "float32", None),
    ((1, 4, 12, 12), (3, 3, 4, 1), 1, "VALID", "float32", None),
    ((1, 4, 12, 12), (3, 3, 4, 1), 1, [[0, 0], [0, 0], [2, 0], [1, 3]], "float32", None),
    ((1, 4, 15, 15), (3, 3, 4, 1), 1, "SAME", "float32", (2, 2)),
    ((2, 6, 11, 15), (3, 3, 6, 2), (2, 1), "SAME", "float32", None),
    ((1, 16, 14, 14), (3, 3, 16, 1), 1, "SAME", "float64", None),
    # column stride 2 and 3: rows of 7, 14, 28 and 17 outputs, odd widths, VALID, a multiplier
    ((1, 16, 14, 14), (3, 3, 16, 1), 2, "SAME", "float32", None),
    ((1, 8, 28, 28), (3, 3, 8, 1), 2, "SAME", "float32", None),
    ((1, 4, 56, 56), (3, 3, 4, 1), 2, "SAME", "float32", None),
    ((1, 4, 10, 34), (3, 3, 4, 1), 2, "SAME", "float32", None),
    ((1, 4, 9, 41), (3, 3, 4, 1), 2, "VALID", "float32", None),
    ((2, 6, 11, 15), (3, 3, 6, 2), (1, 2), "SAME", "float32", None),
    ((1, 4, 13, 25), (3, 3, 4, 1), 3, "SAME", "float32", None),
    ((1, 16, 14, 14), (3, 3, 16, 1), 2, "SAME", "float64", None),
    # rows of several column blocks, whose interior ones load plain vectors: a 5x5 window with a
    # column dilation, stride 2, a multiplier, explicit padding wider on one side
    ((1, 4, 9, 60), (5, 5, 4, 1), 1, "SAME", "float32", (1, 2)),
    ((1, 4, 8, 120), (3, 3, 4, 1), 2, "SAME", "float32", None),
    ((1, 3, 6, 70), (3, 3, 3, 2), 1, "SAME", "float32", None),
    ((1, 4, 6, 112), (3, 3, 4, 1), 1, [[0, 0], [0, 0], [1, 1], [3, 0]], "float32", None),
    ((1, 16, 14, 14), (3, 3, 16, 1), 1, "SAME", "float16", None),  # masked on AVX-512 (AVX512BW)
    ((1, 8, 28, 28), (3, 3, 8, 1), 2, "SAME", "float16", None),
]


@pytest.mark.parametrize("target", ["host", "x86-avx2"])
@pytest.mark.parametrize("case", MASKED_NCHW, ids=[f"{c[0]}-{c[1][:2]}-s{c[2]}-d{c[5]}-{c[4]}" for c in MASKED_NCHW])
def test_nchw_kernels_with_masked_windows_match_the_reference(case, target):
    """The x86 NCHW kernels that read their windows under masks, against the float64 reference."""
    from helpers import check_against_reference, skip_unless_this_cpu_runs

    input_shape, filter_shape, strides, padding, dtype, dilations = case
    skip_unless_this_cpu_runs(target)
    check_against_reference(input_shape, filter_shape, strides, padding, "NCHW", dtype=dtype, target=target,
                            dilations=dilations)


def _row_store(lanes: int, target_dict: dict, source_base: int = 0, relu6: bool = False, local: bool = False,
               dtype: str = "float32"):
    """A PrimFunc storing ``source[base:base + lanes] * 2`` (then clipped to [0, 6] with
    `relu6`, as TVM's max and min) into ``result[3:3 + lanes]`` for `target_dict`; with `local`,
    read from a buffer of the function's own that ``source`` is first copied into."""
    import tvm
    from tvm import tirx

    source = tirx.decl_buffer((32,), dtype, name="source")
    result = tirx.decl_buffer((32,), dtype, name="result")
    read = tirx.decl_buffer((32,), dtype, name="local") if local else source
    value = tirx.BufferLoad(read, [tirx.Ramp(tirx.const(source_base, "int32"), 1, lanes)]) * tirx.Broadcast(
        tirx.const(2, dtype), lanes)
    if relu6:
        value = tirx.Min(tirx.Max(value, tirx.Broadcast(tirx.const(0, dtype), lanes)),
                         tirx.Broadcast(tirx.const(6, dtype), lanes))
    body = tirx.BufferStore(result, value, [tirx.Ramp(tirx.const(3, "int32"), 1, lanes)])
    if local:
        whole = tirx.Ramp(tirx.const(0, "int32"), 1, 32)
        body = tirx.SeqStmt([tirx.AllocBuffer(read), tirx.BufferStore(read, tirx.BufferLoad(source, [whole]), [whole]),
                             body])
    func = tirx.PrimFunc([source, result], body).with_attr("global_symbol", "main")
    return tvm.IRModule({"main": func.with_attr("target", tvm.target.Target(target_dict))})


def _masked_stores(mod) -> int:
    """How many ``tirx.masked_store`` calls `mod`'s main makes."""
    import tvm

    return _count(mod, tvm.ir.Call, lambda call: call.op.same_as(tvm.ir.Op.get("tirx.masked_store")))


@pytest.mark.parametrize("lanes, masked", [(14, True), (7, True), (16, False), (8, False)])
def test_odd_width_stores_become_one_masked_store_on_avx512(lanes, masked):
    """A store of 14 or 7 lanes is one masked store of 16 or 8 lanes for AVX-512 (none for whole
    powers of two, none for AVX2), and writes those lanes and nothing else."""
    import tvm

    from helpers import skip_unless_this_cpu_runs

    avx512 = {"kind": "llvm", "mcpu": "skylake-avx512"}
    assert _masked_stores(masked_odd_stores()(_row_store(lanes, avx512))) == (1 if masked else 0)
    assert _masked_stores(masked_odd_stores()(_row_store(lanes, {"kind": "llvm", "mcpu": "haswell"}))) == 0
    skip_unless_this_cpu_runs("x86-avx512")
    lib = tvm.compile(_row_store(lanes, avx512), target=avx512, tir_pipeline=register_cpu_pipeline())
    values = np.arange(1, 33, dtype="float32")
    result = tvm.runtime.tensor(np.full(32, -1.0, "float32"))
    lib["main"](tvm.runtime.tensor(values), result)
    expected = np.full(32, -1.0, "float32")
    expected[3:3 + lanes] = 2 * values[:lanes]
    np.testing.assert_array_equal(result.numpy(), expected)


def _x86_min_max_calls(mod, suffix: str) -> int:
    """How many calls of x86's vector min and max intrinsics of `suffix` (``avx512.*.ps.512``)
    `mod`'s main makes."""
    import tvm

    intrinsics = {tvm.get_global_func("target.llvm_lookup_intrinsic_id")(f"llvm.x86.{suffix.replace('*', kind)}")
                  for kind in ("min", "max")}
    return _count(mod, tvm.ir.Call, lambda call: call.op.same_as(tvm.ir.Op.get("tirx.call_llvm_pure_intrin"))
                  and int(call.args[0].value) in intrinsics)


@pytest.mark.parametrize("lanes, dtype, suffix", [(14, "float32", "avx512.*.ps.512"), (7, "float32", "avx.*.ps.256"),
                                                  (7, "float64", "avx512.*.pd.512")], ids=["14xf32", "7xf32", "7xf64"])
@pytest.mark.parametrize("at_end, local, widened", [(False, True, True), (True, True, False), (False, False, False)],
                         ids=["own-buffer-with-room", "no-room", "argument"])
def test_odd_width_epilogue_is_computed_on_whole_vectors(at_end, local, widened, lanes, dtype, suffix):
    """A store of 14 or 7 lanes of a clipped row becomes one masked store of 16 or 8 lanes whose
    value is computed on the whole vector, max and min as x86's intrinsics, where the row comes
    from a buffer of the kernel's own holding the whole vector from its start (else the odd-width
    value is shuffled out: an argument's next elements may lie past its end); either way it
    writes the row's lanes and nothing else, with TVM's max and min (NaN gives the bound, -0
    against 0 gives 0)."""
    import tvm
    from tvm import tirx

    from helpers import skip_unless_this_cpu_runs

    avx512 = {"kind": "llvm", "mcpu": "skylake-avx512"}
    base = 32 - lanes if at_end else 0  # at the end, the whole vector would run past the buffer
    rewritten = masked_odd_stores()(_row_store(lanes, avx512, base, relu6=True, local=local, dtype=dtype))
    assert _masked_stores(rewritten) == 1
    assert _x86_min_max_calls(rewritten, suffix) == (2 if widened else 0)
    assert (_count(rewritten, tirx.Min) == 0) == widened
    skip_unless_this_cpu_runs("x86-avx512")
    lib = tvm.compile(_row_store(lanes, avx512, base, relu6=True, local=local, dtype=dtype), target=avx512,
                      tir_pipeline=register_cpu_pipeline())
    values = np.linspace(-8, 8, 32).astype(dtype)
    values[base:base + 4] = [np.nan, -0.0, 3.0, np.inf]
    result = tvm.runtime.tensor(np.full(32, -1.0, dtype))
    lib["main"](tvm.runtime.tensor(values), result)
    doubled = 2 * values[base:base + lanes]
    kept = np.where(doubled > 0, doubled, 0).astype(dtype)  # TVM's max: a > b ? a : b
    expected = np.full(32, -1.0, dtype)
    expected[3:3 + lanes] = np.where(kept < 6, kept, 6)  # TVM's min: a < b ? a : b
    np.testing.assert_array_equal(result.numpy(), expected)
    assert not np.signbit(result.numpy()[4])  # max(-0, 0) is the second operand, +0


def test_nchw_fused_epilogue_keeps_whole_vector_sums():
    """The x86-avx512 NCHW kernel of 14x14x384-s1 with bias + ReLU6 sums whole 16-lane rows (LLVM
    had narrowed them to the 14 stored lanes, and spilled the window loads) and clips each row
    with one max and one min (no compare and blend)."""
    import dwc_compiler as dwc

    spec = dwc.DepthwiseSpec.create((1, 384, 14, 14), (3, 3, 384, 1), 1, "SAME", "NCHW", with_bias=True,
                                    activation="relu6")
    kernel = dwc.build(spec, "x86-avx512", use_records=False)
    ir, asm = kernel.inspect_source("ll"), kernel.inspect_source("asm")
    assert "fmuladd.v16f32" in ir and "fmuladd.v14f32" not in ir
    assert asm.count("vminps") == asm.count("vmaxps") > 0
    assert "vblendmps" not in asm and "vcmpltps" not in asm


def test_nchw_rows_of_14_are_stored_as_one_masked_vector():
    """The x86-avx512 NCHW kernel of 14x14x384-s1 stores each 14-column row as one masked
    16-lane store."""
    import dwc_compiler as dwc

    spec = dwc.DepthwiseSpec.create((1, 384, 14, 14), (3, 3, 384, 1), 1, "SAME", "NCHW")
    assert "@llvm.masked.store.v16f32" in dwc.build(spec, "x86-avx512", use_records=False).inspect_source("ll")
