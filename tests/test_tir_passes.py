"""dwc's TIR pass for strided copies (dwc_compiler/tir_passes.py): which loops it rewrites, and
that the rewritten code computes what the loop did."""

import numpy as np
import pytest

from dwc_compiler.tir_passes import CHUNK_LANES, deinterleave_copies, register_cpu_pipeline


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
    """dwc's NCHW stride-2 kernels are compiled with the pass: the plane copy of 14x14x576-s2
    reaches LLVM as vector shuffles of whole input vectors (on AVX-512, one masked vector)."""
    import dwc_compiler as dwc

    from dwc_compiler import toolchain

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
