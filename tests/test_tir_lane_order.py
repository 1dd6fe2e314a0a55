"""dwc's pass that keeps stride-2 NCHW sums in lane order on AVX2 (``dwc_compiler/tir_lane_order.py``):
the order itself, what it rewrites, what it leaves alone, and that the results do not change."""

import numpy as np
import pytest

from dwc_compiler.tir_lane_order import lane_order, sums_in_lane_order

AVX2 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell"}
AVX512 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "skylake-avx512"}


def test_lane_order_is_what_an_in_lane_pick_gives():
    """Lane k of an even pick within 128-bit halves holds the column lane_order gives: for 8
    float32 lanes the first vector's 0, 2 then the second's 0, 2 in the low half (columns 0, 1,
    4, 5); for 4 float64 lanes columns 0, 2, 1, 3; for 16 lanes each half in turn."""
    assert lane_order(8, 4) == [0, 1, 4, 5, 2, 3, 6, 7]
    assert lane_order(4, 8) == [0, 2, 1, 3]
    assert sorted(lane_order(16, 4)) == list(range(16)) and lane_order(16, 4)[:4] == [0, 1, 8, 9]
    # vshufps(a, b, 0x88): a[0], a[2], b[0], b[2] in the low half, a[4], a[6], b[4], b[6] in the
    # high one, as elements of the concatenation [a, b]; element 2c is column c of the row.
    in_lane_pick = np.array([0, 2, 8, 10, 4, 6, 12, 14])
    assert list(in_lane_pick // 2) == lane_order(8, 4)


def _window_row(target: dict, addend: str = "pick", width: int = 14):
    """A PrimFunc summing, for `width` output columns at column stride 2, ``2 * source[2c] +
    3 * source[2c + 1]`` into a sums buffer of its own (two vectors of 8, zeroed first), then
    storing the sums' first `width` columns to ``result``; with `addend` "plain", a contiguous
    load takes the place of the even pick of the second vector (a sum the pass cannot reorder)."""
    import tvm
    from tvm import tirx

    source = tirx.decl_buffer((32,), "float32", name="source")
    result = tirx.decl_buffer((16,), "float32", name="result")
    sums = tirx.decl_buffer((16,), "float32", name="sums")
    statements = [tirx.AllocBuffer(sums)]
    for vector in range(2):
        at = tirx.Ramp(tirx.const(8 * vector, "int32"), 1, 8)
        statements.append(tirx.BufferStore(sums, tirx.Broadcast(tirx.const(0, "float32"), 8), [at]))
        pieces = [tirx.BufferLoad(source, [tirx.Ramp(tirx.const(16 * vector + 8 * piece, "int32"), 1, 8)])
                  for piece in range(2)]
        for parity, weight in ((0, 2), (1, 3)):
            picked = tirx.Shuffle(pieces, [2 * lane + parity for lane in range(8)])
            if addend == "plain" and vector == 1 and parity == 0:
                picked = pieces[0]
            value = tirx.BufferLoad(sums, [at]) + picked * tirx.Broadcast(tirx.const(weight, "float32"), 8)
            statements.append(tirx.BufferStore(sums, value, [at]))
    row = tirx.Ramp(tirx.const(0, "int32"), 1, width)
    statements.append(tirx.BufferStore(result, tirx.BufferLoad(sums, [row]), [row]))
    func = tirx.PrimFunc([source, result], tirx.SeqStmt(statements)).with_attr("global_symbol", "main")
    return tvm.IRModule({"main": func.with_attr("target", tvm.target.Target(target))})


def _shuffles(mod) -> list[list[int]]:
    import tvm_ffi
    from tvm import tirx

    found = []
    tvm_ffi.structural_walk(mod["main"].body, ((tirx.Shuffle, lambda shuffle: found.append(
        [int(index) for index in shuffle.indices])),))
    return found


def test_sums_of_even_and_odd_picks_are_kept_in_lane_order_on_avx2():
    """On AVX2 each pick becomes the in-lane one (lanes in lane_order), and the row's store reads
    the sums back in column order: a shuffle of both vectors of sums."""
    rewritten = sums_in_lane_order()(_window_row(AVX2))
    shuffles = _shuffles(rewritten)
    assert [0, 2, 8, 10, 4, 6, 12, 14] in shuffles and [1, 3, 9, 11, 5, 7, 13, 15] in shuffles
    assert [0, 2, 4, 6, 8, 10, 12, 14] not in shuffles
    position = {column: lane for lane, column in enumerate(lane_order(8, 4))}
    assert [position[column % 8] + 8 * (column // 8) for column in range(14)] in shuffles


@pytest.mark.parametrize("target, addend", [(AVX512, "pick"), (AVX2, "plain")], ids=["avx512", "unreorderable"])
def test_sums_are_left_in_column_order_where_the_pass_does_not_apply(target, addend):
    """AVX-512 picks in one instruction (left alone); a sum with an addend that is no pick keeps
    its buffer in column order (every pick and store as it was)."""
    mod = _window_row(target, addend)
    assert sums_in_lane_order()(mod)["main"].body.same_as(mod["main"].body)


@pytest.mark.parametrize("width", [14, 16, 9])
def test_sums_in_lane_order_compute_the_same_row(width):
    """Compiled with dwc's pipeline for AVX2 on this CPU, the rewritten row computes what the
    picks in column order do: 2 * even + 3 * odd elements, for each of `width` columns."""
    import tvm

    from dwc_compiler.tir_passes import register_cpu_pipeline
    from helpers import skip_unless_this_cpu_runs

    skip_unless_this_cpu_runs("x86-avx2")
    mod = _window_row(AVX2, width=width)
    lib = tvm.compile(mod, target=mod["main"].attrs["target"], tir_pipeline=register_cpu_pipeline())
    values = np.random.default_rng(0).integers(-50, 50, 32).astype(np.float32)  # sums exact in float32
    output = tvm.runtime.tensor(np.full(16, -1, np.float32))
    lib["main"](tvm.runtime.tensor(values), output)
    expected = 2 * values[0::2] + 3 * values[1::2]
    np.testing.assert_array_equal(output.numpy()[:width], expected[:width])
    assert (output.numpy()[width:] == -1).all()


def test_avx2_stride_two_nchw_kernel_picks_in_lane():
    """The AVX2 NCHW kernel of 28x28x192-s2 has no cross-half pick left: every shuffle of two
    8-float vectors that picks even or odd elements does so within the halves."""
    import re

    import dwc_compiler as dwc

    spec = dwc.DepthwiseSpec.create((1, 192, 28, 28), (3, 3, 192, 1), 2, "SAME", "NCHW")
    ir = dwc.build(spec, "x86-avx2", use_records=False).inspect_source("ll")
    picks = re.findall(r"shufflevector <8 x float> [^,]+, <8 x float> [^,]+, <8 x i32> <([^>]*)>", ir)
    assert picks
    for pick in picks:
        indices = [int(text.split()[-1]) if "poison" not in text else None for text in pick.split(",")]
        assert all(index is None or (index % 8) // 4 == lane // 4 for lane, index in enumerate(indices)), pick
