"""dwc's TIR passes (dwc_compiler/tir_passes.py): the strided copies it rewrites and the vector
selects of loads it masks, and that the rewritten code computes what TVM's did, reading nothing
it should not."""

import numpy as np
import pytest

from dwc_compiler.tir_passes import CHUNK_LANES, deinterleave_copies, masked_select_loads, register_cpu_pipeline


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


def _count(mod, node_type) -> int:
    import tvm_ffi

    found = []
    tvm_ffi.structural_walk(mod["main"], ((node_type, lambda node: found.append(node)),))
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
    """dwc's NCHW stride-2 kernels that copy planes (x86 ones made to, as ARM's and float16 ones
    do) are compiled with the pass: the plane copy of 14x14x576-s2 reaches LLVM as vector
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
def test_nchw_kernels_with_strided_copies_match_the_reference(case, target):
    """The stride-2 NCHW kernels, whose plane copy the pass rewrites, against the float64
    reference on every CPU target (aarch64 under qemu)."""
    from helpers import check_against_reference, skip_unless_this_cpu_runs

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
    import tvm
    import tvm_ffi

    found = []
    tvm_ffi.structural_walk(mod["main"], ((tvm.ir.Call, lambda call: found.append(call)
                                           if call.op.same_as(tvm.ir.Op.get("tirx.masked_load")) else None),))
    return len(found)


def test_vector_select_of_a_load_is_loaded_under_its_mask():
    """A vector Select of a contiguous load becomes a Select of the load under the same mask; of
    a strided load (stride s), of s contiguous masked loads and a shuffle."""
    assert _masked_loads(masked_select_loads()(_select_of_load(16))) == 1
    assert _masked_loads(masked_select_loads()(_select_of_load(16, stride=2))) == 2
    assert _masked_loads(masked_select_loads()(_select_of_load(8, stride=3))) == 3


@pytest.mark.parametrize("target", ["x86-avx512", "x86-avx2"])
def test_nchw_kernels_load_windows_under_masks(target):
    """The x86 NCHW kernels load window rows from the input under masks (14x14x384-s1: 16-lane
    rows of 14 columns); at column stride 2 (28x28x192-s2: 14 outputs a row) two contiguous
    masked loads a window row, and a shuffle that picks the even lanes."""
    import dwc_compiler as dwc

    lanes = 16 if target == "x86-avx512" else 8
    spec = dwc.DepthwiseSpec.create((1, 384, 14, 14), (3, 3, 384, 1), 1, "SAME", "NCHW")
    ir = dwc.build(spec, target, use_records=False).inspect_source("ll")
    assert f"@llvm.masked.load.v{lanes}f32" in ir
    strided = dwc.DepthwiseSpec.create((1, 192, 28, 28), (3, 3, 192, 1), 2, "SAME", "NCHW")
    ir = dwc.build(strided, target, use_records=False).inspect_source("ll")
    # the even lanes of the two loads (LLVM leaves the lanes of columns past the row's 14 poison)
    even = ", ".join(f"i32 {2 * lane}" for lane in range(lanes // 2 + 1))
    assert f"@llvm.masked.load.v{lanes}f32" in ir and f"<{lanes} x i32> <{even}, " in ir


def test_strided_vector_loads_become_contiguous_pieces_on_x86_only():
    """A strided vector load outside any Select becomes contiguous masked loads and a shuffle for
    an x86 target with AVX2, and is left alone for others (where masked loads are no cheaper)."""
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
        assert _masked_loads(masked_select_loads()(mod)) == pieces


@pytest.mark.parametrize("target", ["host", "x86-avx2"])
def test_strided_vector_load_reads_only_its_elements(target):
    """Compiled, a stride-2 vector load of elements 1, 3, .. 31 of a 32-element buffer computes
    what the lane-by-lane load did, and reads nothing past element 31."""
    import tvm
    from tvm import tirx

    from helpers import skip_unless_this_cpu_runs

    skip_unless_this_cpu_runs(target)
    import dwc_compiler as dwc

    source = tirx.decl_buffer((32,), "float32", name="source")
    result = tirx.decl_buffer((16,), "float32", name="result")
    ramp = tirx.Ramp(tirx.const(0, "int32"), 1, 16)
    body = tirx.BufferStore(result, tirx.BufferLoad(source, [tirx.Ramp(tirx.const(1, "int32"), 2, 16)]), [ramp])
    mod = tvm.IRModule({"main": tirx.PrimFunc([source, result], body).with_attr("global_symbol", "main")})
    lib = tvm.compile(mod, target=dwc.targets.resolve_target(target).tvm(), tir_pipeline=register_cpu_pipeline())
    assert "@llvm.masked.load" in lib.mod.inspect_source("ll")
    values = np.arange(32, dtype="float32")
    out = tvm.runtime.tensor(np.zeros(16, "float32"))
    lib["main"](tvm.runtime.tensor(values), out)
    np.testing.assert_array_equal(out.numpy(), values[1::2])


GUARDED_RUN = """
import ctypes, mmap, sys
import numpy as np
import dwc_compiler as dwc

shape, dtype, target, stride = (1, 16, 16, 16), np.dtype(sys.argv[1]), sys.argv[2], int(sys.argv[3])
page = mmap.PAGESIZE
size = int(np.prod(shape)) * dtype.itemsize
pages = -(-size // page)
region = mmap.mmap(-1, (pages + 2) * page)  # a guard page on each side of the input's pages
libc = ctypes.CDLL(None, use_errno=True)
base = ctypes.addressof(ctypes.c_char.from_buffer(region))
for guard in (base, base + (pages + 1) * page):
    assert libc.mprotect(ctypes.c_void_p(guard), page, 0) == 0  # PROT_NONE
# The input ends where its last page ends: the first and last elements touch the guards.
offset = page + pages * page - size
data = np.frombuffer(region, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)
data[...] = np.random.default_rng(0).random(shape).astype(dtype)
assert data.ctypes.data % page == 0 or size % page
weights = np.random.default_rng(1).random((3, 3, 16, 1)).astype(dtype)
spec = dwc.DepthwiseSpec.create(shape, weights.shape, stride, "SAME", "NCHW", dtype=str(dtype))
result = dwc.build(spec, target)(data, weights)
expected = spec.reference(data, weights)
assert np.allclose(result, expected, rtol=1e-5, atol=1e-5), np.abs(result - expected).max()
print("ok")
"""


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("target", ["host", "x86-avx2"])
def test_nchw_windows_read_nothing_outside_the_input(dtype, target, stride, tmp_path):
    """An NCHW input that starts and ends on a page with an unmapped page on either side: the
    kernel (whose windows reach one column before the first element and past the last) reads
    nothing there, and computes the reference. Run in a child process: a fault is a failure."""
    import subprocess
    import sys

    from helpers import skip_unless_this_cpu_runs

    skip_unless_this_cpu_runs(target)
    script = tmp_path / "guarded.py"
    script.write_text(GUARDED_RUN)
    run = subprocess.run([sys.executable, str(script), dtype, target, str(stride)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip() == "ok", (run.returncode, run.stderr[-2000:])


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
