"""The schedules checked on the IR and code they produce, without timing (as TVM's dlight tests do)."""

import re

import pytest

import dwc_compiler as dwc
from dwc_compiler.ops.primfunc import prim_func
from dwc_compiler.schedules import apply_rules, x86
from dwc_compiler.targets import resolve_target


def for_loops(schedule) -> list:
    """Every loop of a scheduled PrimFunc, outermost first."""
    import tvm
    import tvm_ffi

    found = []
    tvm_ffi.structural_walk(schedule.mod["main"], ((tvm.tirx.For, lambda loop: found.append(loop)),),
                            order="pre")
    return found


def loops_of(spec, target_name):
    """(kind, extent) of every loop in the scheduled PrimFunc, outermost first."""
    schedule, name = apply_rules(prim_func(spec), spec, resolve_target(target_name))
    return name, [(int(loop.kind), int(loop.extent)) for loop in for_loops(schedule)]


def kinds():
    import tvm

    return tvm.tirx.ForKind


@pytest.mark.parametrize("target_name, lanes, family", [
    ("x86-avx512", 16, "x86"), ("x86-avx2", 8, "x86"), ("aarch64-neon", 4, "arm")])
@pytest.mark.parametrize("workload", ["mbv2-56x56x144-s1", "mbv2-14x14x576-s2", "mbv2-112x112x32-s1"])
def test_nhwc_channel_loop_vectorized_at_target_width(target_name, lanes, family, workload):
    """NHWC: channels are vectorized at the target's float32 lane count; the outer loop is parallel."""
    from dwc_compiler.workloads import workload as named

    name, loops = loops_of(named(workload), target_name)
    assert name == f"hand:{family}"
    vector_extents = {extent for kind, extent in loops if kind == kinds().VECTORIZED}
    assert vector_extents == {lanes}
    assert loops[0][0] == kinds().PARALLEL


def padded_copies(spec, target_name, dwc_passes: bool = True) -> list:
    """The buffers a scheduled PrimFunc of `spec` allocates for padded input planes."""
    import tvm
    import tvm_ffi

    schedule, _ = apply_rules(prim_func(spec), spec, resolve_target(target_name), dwc_passes=dwc_passes)
    found = []
    tvm_ffi.structural_walk(schedule.mod["main"], ((tvm.s_tir.SBlock, lambda block: found.extend(
        buffer for buffer in block.alloc_buffers if str(buffer.name).startswith("pad"))),), order="pre")
    return found


def test_float16_nchw_reads_windows_under_masks_only_with_avx512bw():
    """Float16 NCHW windows are read under masks on x86-avx512 (AVX512BW's 16-bit masked loads)
    and from a plane copy on x86-avx2 (no 16-bit masked load)."""
    spec = dwc.DepthwiseSpec.create((1, 16, 14, 14), (3, 3, 16, 1), 1, "SAME", "NCHW", dtype="float16")
    assert not padded_copies(spec, "x86-avx512")
    assert padded_copies(spec, "x86-avx2")


@pytest.mark.parametrize("size, planes_per_group", [(64, 1), (32, 2), (16, 4)])
def test_nchw_vectorizes_columns_and_parallel_planes(size, planes_per_group):
    """NCHW where planes are copied (ARM): output columns are vectorized (the contiguous axis),
    channel planes run in parallel, small ones in groups whose padded copies are made together."""
    from dwc_compiler.schedules.cpu import planes_per_copy

    spec = dwc.DepthwiseSpec.create((1, 64, size, size), (3, 3, 64, 1), 1, "SAME", "NCHW")
    name, loops = loops_of(spec, "aarch64-neon")
    assert name == "hand:arm"
    assert {extent for kind, extent in loops if kind == kinds().VECTORIZED} == {4}
    assert planes_per_copy(spec) == planes_per_group
    assert loops[0] == (kinds().PARALLEL, 64 // planes_per_group)
    assert padded_copies(spec, "aarch64-neon")


@pytest.mark.parametrize("target_name, lanes", [("x86-avx512", 16), ("x86-avx2", 8)])
@pytest.mark.parametrize("size", [64, 16, 14, 7])
def test_nchw_on_x86_reads_windows_from_the_input_at_stride_1(target_name, lanes, size):
    """NCHW on x86 at column strides up to 4: no padded copy of any plane, each plane a task of
    its own, columns vectorized; at column stride 5 the planes are copied (split by phase), and
    so they are for a compiler without dwc's passes."""
    spec = dwc.DepthwiseSpec.create((1, 64, size, size), (3, 3, 64, 1), 1, "SAME", "NCHW")
    name, loops = loops_of(spec, target_name)
    assert name == "hand:x86"
    assert loops[0] == (kinds().PARALLEL, 64)
    assert min(lanes, 8 if size == 7 else 16) in {extent for kind, extent in loops if kind == kinds().VECTORIZED}
    assert not padded_copies(spec, target_name)
    for stride in (2, 4):
        strided = dwc.DepthwiseSpec.create((1, 64, size, size), (3, 3, 64, 1), stride, "SAME", "NCHW")
        assert not padded_copies(strided, target_name)
    strided = dwc.DepthwiseSpec.create((1, 64, size, size), (5, 5, 64, 1), 5, "SAME", "NCHW")
    assert padded_copies(strided, target_name)
    assert padded_copies(spec, target_name, dwc_passes=False)


def _interior_annotations(spec, target_name: str, dwc_passes: bool = True) -> list:
    """The ``[first, end)`` annotations of the column-block loops in `spec`'s hand schedule."""
    import tvm_ffi
    from tvm import tirx

    from dwc_compiler.tir_passes import INTERIOR_BLOCKS

    schedule, _ = apply_rules(prim_func(spec), spec, resolve_target(target_name), dwc_passes=dwc_passes)
    found = []
    tvm_ffi.structural_walk(schedule.mod["main"], ((tirx.For, lambda loop: found.append(
        [int(bound) for bound in loop.annotations[INTERIOR_BLOCKS]]) if INTERIOR_BLOCKS in loop.annotations else None),))
    return found


@pytest.mark.parametrize("input_shape, window, stride, padding, target_name, interior", [
    ((1, 8, 56, 56), 3, 1, "SAME", "x86-avx2", [1, 6]),  # 7 blocks of one vector: the first and last read padding
    ((1, 8, 112, 112), 3, 2, "SAME", "x86-avx2", [0, 6]),  # SAME pads stride 2 on the right only
    ((1, 8, 112, 112), 3, 1, "SAME", "x86-avx2", [1, 13]),  # 14 blocks of one vector
    ((1, 8, 56, 56), 5, 1, "SAME", "x86-avx2", [1, 6]),
    ((1, 8, 56, 56), 3, 1, "VALID", "x86-avx2", [0, 6]),  # 54 columns: the last block past the row
    ((1, 8, 14, 14), 3, 1, "SAME", "x86-avx2", [0, 0]),  # one block: none inside
    ((1, 8, 112, 112), 3, 1, "SAME", "x86-avx512", [0, 0]),  # a block of all 7 vectors
])
def test_nchw_marks_the_column_blocks_inside_the_input(input_shape, window, stride, padding, target_name, interior):
    """The x86 NCHW schedule that reads windows from the input marks its column-block loop with
    the blocks whose windows read no padding column (``cpu.interior_column_blocks``), for dwc's
    pass to give them plain loads; the plane-copy schedule (no dwc passes) marks none."""
    channels = input_shape[1]
    spec = dwc.DepthwiseSpec.create(input_shape, (window, window, channels, 1), stride, padding, "NCHW")
    assert _interior_annotations(spec, target_name) == [interior]
    assert _interior_annotations(spec, target_name, dwc_passes=False) == []


@pytest.mark.parametrize("input_shape, stride, interior", [
    ((1, 8, 56, 56), 1, [1, 6]),  # its depthwise step's blocks are one vector each, as the depthwise kernel's
    ((1, 8, 112, 112), 2, [0, 6]),
    ((1, 8, 14, 14), 1, [0, 0]),
])
def test_separable_nchw_marks_the_depthwise_column_blocks_inside_the_input(input_shape, stride, interior):
    """The fused separable NCHW schedule's depthwise step, reading its windows from the input,
    marks its column-block loop as the depthwise kernel does (plain loads inside the row); with
    the plane copy (no dwc passes) it marks none."""
    channels = input_shape[1]
    spec = dwc.SeparableSpec.create(input_shape, (3, 3, channels, 1), (1, 1, channels, 16), stride, "SAME", "NCHW")
    assert _interior_annotations(spec, "x86-avx2") == [interior]
    assert _interior_annotations(spec, "x86-avx2", dwc_passes=False) == []


def test_float16_accumulates_in_float32_lanes():
    """float16 sums are kept in float32 registers: the vector width is float32's."""
    spec = dwc.DepthwiseSpec.create((1, 14, 14, 64), (3, 3, 64, 1), 1, "SAME", dtype="float16")
    _, loops = loops_of(spec, "x86-avx512")
    assert {extent for kind, extent in loops if kind == kinds().VECTORIZED} == {16}


def test_odd_channel_counts_still_schedule():
    """Channels that no vector width divides fall back to narrower vectors, not to failure."""
    spec = dwc.DepthwiseSpec.create((1, 9, 9, 24), (3, 3, 24, 1), 1, "SAME")
    name, loops = loops_of(spec, "x86-avx512")
    assert name == "hand:x86"
    assert {extent for kind, extent in loops if kind == kinds().VECTORIZED} == {8}


def test_window_is_unrolled():
    """The 3x3 filter window is unrolled around the register tile."""
    from dwc_compiler.workloads import workload as named

    _, loops = loops_of(named("mbv2-28x28x192-s1"), "x86-avx512")
    assert sum(1 for kind, extent in loops if kind == kinds().UNROLLED and extent == 3) >= 2


def test_avx512_code_uses_zmm_fma_and_avx2_ymm():
    """LLVM emits 512-bit FMAs for x86-avx512 and 256-bit ones (no zmm) for x86-avx2."""
    spec = dwc.DepthwiseSpec.create((1, 14, 14, 64), (3, 3, 64, 1), 1, "SAME")
    avx512 = dwc.build(spec, "x86-avx512").inspect_source("asm")
    avx2 = dwc.build(spec, "x86-avx2").inspect_source("asm")
    assert re.search(r"vfmadd\d+ps\s+%zmm", avx512)
    assert re.search(r"vfmadd\d+ps\s+%ymm", avx2) and "zmm" not in avx2


def test_aarch64_code_uses_neon_fmla_on_4s_vectors():
    """The aarch64 module's disassembly holds NEON fmla on .4s (4 x float32) vectors."""
    spec = dwc.DepthwiseSpec.create((1, 14, 14, 64), (3, 3, 64, 1), 1, "SAME")
    asm = dwc.build(spec, "aarch64-neon").inspect_source("asm")
    assert re.search(r"fmla\s+v\d+\.4s", asm)


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
@pytest.mark.parametrize("target_name", ["x86-avx2", "aarch64-neon"])
def test_register_tiles_need_no_workspace_calls(target_name, data_format):
    """The sums of a register tile live on the stack (then in registers): the kernel makes no
    TVMBackendAllocWorkspace call (a 'local' buffer made one per tile: 7x7x960 NCHW took 1.9x
    the time)."""
    shape = (1, 7, 7, 96) if data_format == "NHWC" else (1, 96, 7, 7)
    spec = dwc.DepthwiseSpec.create(shape, (3, 3, 96, 1), 1, "SAME", data_format)
    asm = dwc.build(spec, target_name).inspect_source("asm")
    assert "TVMBackendAllocWorkspace" not in asm


def test_replayed_cpu_record_keeps_its_sums_on_the_stack():
    """A shipped x86 record whose trace puts the sums in 'local' buffers replays with them on
    the stack: its decisions apply, no workspace call is left."""
    from dwc_compiler.workloads import workload

    kernel = dwc.build(workload("mbv2-28x28x192-s2"), "x86-avx512")  # built, not run
    assert kernel.record is not None and kernel.record["id"] == kernel.schedule
    assert "TVMBackendAllocWorkspace" not in kernel.inspect_source("asm")


@pytest.mark.parametrize("stride", [1, 2])
def test_nchw_plane_copy_is_split_at_the_input_edges(stride):
    """NCHW where planes are copied (ARM; x86 kernels for a compiler without dwc's passes): the
    plane copy's columns (at stride 2 column pairs) inside the input form a loop of their own (no
    padding test in it), and no block fills unused slots of the even/odd layout."""
    spec = dwc.DepthwiseSpec.create((1, 16, 56, 56), (3, 3, 16, 1), stride, "SAME", "NCHW")
    schedule, _ = apply_rules(prim_func(spec), spec, resolve_target("x86-avx2"), dwc_passes=False)
    script = schedule.mod.script()
    pad_blocks = re.findall(r'T\.sblock\("(pad\w*)"\)', script)
    assert len(pad_blocks) >= 2, pad_blocks
    assert "_padding" not in script


def branch_free_loops(asm: str) -> list[int]:
    """The FMA count of every loop in x86 `asm` whose body has no conditional branch besides
    its back edge."""
    lines = asm.splitlines()
    labels = {match.group(1): i for i, line in enumerate(lines) if (match := re.match(r"^(\.LBB\w+):", line))}
    found = []
    for i, line in enumerate(lines):
        jump = re.match(r"^\s+(j\w+)\s+(\.LBB\w+)", line)
        if jump and jump.group(1) != "jmp" and labels.get(jump.group(2), i) < i:
            body = lines[labels[jump.group(2)]:i]
            if not any(re.match(r"^\s+j(?!mp)\w*\s", instruction) for instruction in body):
                found.append(sum(1 for instruction in body if re.match(r"^\s+vfmadd", instruction)))
    return found


@pytest.mark.parametrize("target_name, inside", [("x86-avx2", True), ("x86-avx512", False)])
def test_nhwc_channel_blocks_inside_column_tiles_on_avx2(target_name, inside):
    """With AVX2's 16 registers, NHWC row tiles in parallel run every channel block of a column
    tile in turn (row tiles -> column tiles -> channel blocks, the register tile under the
    blocks); on AVX-512 each block runs all the column tiles (row tiles -> blocks -> columns)."""
    from dwc_compiler.ops.primfunc import BLOCK_EPILOGUE
    from dwc_compiler.schedules.cpu import channel_group_blocks
    from dwc_compiler.workloads import workload

    spec, target = workload("mbv2-112x112x32-s1"), resolve_target(target_name)
    tiling = x86.default_tiling(spec, target)
    assert tiling.blocks_inside_columns == inside and not channel_group_blocks(spec, tiling)
    schedule, _ = apply_rules(prim_func(spec), spec, target)
    loops = schedule.get_loops(schedule.get_sblock(BLOCK_EPILOGUE))
    parallel, second, third, *_ = [schedule.get(loop) for loop in loops]
    col_tiles, blocks = spec.out_width // tiling.tile_cols, spec.in_channels // tiling.block
    assert int(parallel.extent) == spec.out_height // tiling.tile_rows
    assert (int(second.extent), int(third.extent)) == ((col_tiles, blocks) if inside else (blocks, col_tiles))


@pytest.mark.parametrize("workload_name", ["mbv2-56x56x144-s1", "mbv2-28x28x192-s2"])
def test_nhwc_interior_tiles_run_without_bounds_tests(workload_name):
    """NHWC pads by testing bounds inside the window; the tiles whose windows lie inside the
    input get loops of their own (TVM's LoopPartition on one `likely` per bound) with no test
    left: a loop of at least a whole register tile's FMAs (2x4 or 2x2 pixels x 9 taps, one
    vector each) and no branch. With the tests joined, every tile loop kept 15 branches
    (56x56x144-s1: 0.60x the time without them, 1 thread, znver3)."""
    from dwc_compiler.workloads import workload

    spec, target = workload(workload_name), resolve_target("x86-avx2")
    tiling = x86.default_tiling(spec, target)
    asm = dwc.build(spec, target).inspect_source("asm")
    assert max(branch_free_loops(asm), default=0) >= tiling.tile_rows * tiling.tile_cols * 9


@pytest.mark.parametrize("op", ["depthwise", "separable"])
@pytest.mark.parametrize("size, stride", [(7, 1), (14, 1), (28, 2)])
def test_nchw_ragged_rows_keep_the_epilogue_vectorized(op, size, stride):
    """NCHW rows of 7, 14 or 28 outputs (no whole number of AVX-512 vectors): the fused ReLU6
    is vector code, not one clamp per element (the epilogue is not scalar). A vector loop split with a
    predicate (column < width) is made scalar by TVM's vectorizer: 7x7x960 with ReLU6 took 1.30x
    the plain kernel's time, its clamp two scalar instructions per output. Each bound is one
    vmaxps / vminps: clamped in the widened rows, LLVM saw the padding lane unused, made that lane
    of the constant 6 poison and no longer matched the minimum, leaving a compare and a blend
    (7x7x960 NCHW with ReLU6: 1.11x the plain kernel's time; 1.06x with vminps)."""
    channels = 32
    depthwise = dict(strides=stride, padding="SAME", data_format="NCHW")
    if op == "depthwise":
        spec = dwc.DepthwiseSpec.create((1, channels, size, size), (3, 3, channels, 1), **depthwise,
                                        with_bias=True, activation="relu6")
    else:
        spec = dwc.SeparableSpec.create((1, channels, size, size), (3, 3, channels, 1), (1, 1, channels, 16),
                                        **depthwise, with_pointwise_bias=True, pointwise_activation="relu6")
    asm = dwc.build(spec, "x86-avx512").inspect_source("asm")
    assert re.search(r"vmaxps\s+.*%[xyz]mm", asm) and re.search(r"vminps\s+.*%[xyz]mm", asm)
    assert not re.search(r"vm(ax|in)ss\s", asm)
    assert not re.search(r"vblendmps|vblendvps", asm), "a clamp left as a compare and a blend"


def _parallel_extent(schedule) -> int:
    """The extent of the outermost (parallel) loop of a scheduled PrimFunc."""
    outermost = for_loops(schedule)[0]
    assert int(outermost.kind) == kinds().PARALLEL
    return int(outermost.extent)


@pytest.mark.parametrize("shape, strides, group_blocks", [
    ((1, 14, 14, 384), 1, 1), ((1, 7, 7, 960), 1, 1), ((1, 28, 28, 192), 1, 1), ((2, 14, 14, 64), 1, 1),
    ((1, 14, 14, 576), 2, 4), ((1, 14, 14, 384), 2, 3), ((1, 28, 28, 192), 2, 1),
    ((1, 56, 56, 144), 1, 0), ((1, 56, 56, 144), 2, 0), ((1, 14, 14, 24), 1, 0), ((1, 14, 14, 48), 1, 0),
    ((8, 28, 28, 192), 1, 0)],
    ids=["14x14x384", "7x7x960", "28x28x192", "batch2-14x14x64", "14x14x576-s2", "14x14x384-s2", "28x28x192-s2",
         "56x56x144", "56x56x144-s2", "24-channels", "3-blocks", "batch8-past-L2"])
def test_nhwc_parallel_loop_runs_channel_groups_on_small_planes(shape, strides, group_blocks):
    """NHWC kernels on planes up to 28x28 run groups of channel blocks (of whole cache lines)
    in parallel, each over all its rows, so that the border rows LoopPartition splits off run
    inside the parallel tasks: one block a task at stride 1; at stride 2 the most blocks up to
    4 that leave 8 tasks (14x14x576-s2: 4 of 36, 14x14x384-s2: 3 of 24, 28x28x192-s2: 1 of 12).
    Other layers run row tiles in parallel: larger planes, blocks that are no whole cache line
    (24 channels: 8-lane vectors), too few blocks to share out (48 channels: 3), inputs beyond
    half an L2 (a batch of 8 28x28x192 images). A batch counts its blocks once per image."""
    from dwc_compiler.schedules.cpu import channel_group_blocks
    from dwc_compiler.schedules.x86 import default_tiling

    target = resolve_target("x86-avx512")
    spec = dwc.DepthwiseSpec.create(shape, (3, 3, shape[3], 1), strides, "SAME")
    schedule, _ = apply_rules(prim_func(spec), spec, target)
    tiling = default_tiling(spec, target)
    assert channel_group_blocks(spec, tiling) == group_blocks
    if group_blocks:
        assert _parallel_extent(schedule) == spec.batch * spec.in_channels // tiling.block // group_blocks
    else:
        assert _parallel_extent(schedule) == spec.batch * spec.out_height // tiling.tile_rows


def test_one_group_an_image_reads_as_groups_and_has_no_variants():
    """A batch of 8 14x14x64 images at stride 2 (4 blocks) runs one group of all 4 blocks an
    image: the parallel loop is the batch's alone, over no row, and reads as groups of 4, whose
    variants would take 8 blocks a pixel for 4 vectors (more than MAX_ALIGNED_BLOCKS_RATIO)."""
    from dwc_compiler.schedules import aligned_variants
    from dwc_compiler.schedules.cpu import group_blocks_of
    from dwc_compiler.schedules.x86 import default_tiling

    target = resolve_target("x86-avx512")
    spec = dwc.DepthwiseSpec.create((8, 14, 14, 64), (3, 3, 64, 1), 2, "SAME")
    main, _ = apply_rules(prim_func(spec), spec, target)
    assert _parallel_extent(main) == 8
    assert group_blocks_of(main, spec, default_tiling(spec, target)) == 4
    assert aligned_variants(spec, target, main).by_offset == {}


@pytest.mark.parametrize("seed", range(1, 7))
def test_searched_tiles_divide_the_groups(seed):
    """A search samples the blocks of 14x14x576-s2 inside groups of 4 vectors fixed first: every
    sampled tile (1, 2 or 4 vectors a block) leaves 9 tasks, read back as 4 vectors a task."""
    import tvm

    from dwc_compiler.schedules.cpu import group_blocks_of, tiling_of

    target = resolve_target("x86-avx512")
    spec = dwc.DepthwiseSpec.create((1, 14, 14, 576), (3, 3, 576, 1), 2, "SAME")
    sch = x86.apply(tvm.s_tir.Schedule(prim_func(spec), seed=seed), spec, target, tunable=True)
    tiling = tiling_of(sch, spec, x86.default_tiling(spec, target))
    assert _parallel_extent(sch) == 9
    assert group_blocks_of(sch, spec, tiling) * tiling.vectors_per_block == 4


@pytest.mark.parametrize("shape, strides, group_blocks, blocks_a_pixel, limit", [
    ((1, 7, 7, 960), 1, 1, 61, 20), ((1, 14, 14, 576), 2, 4, 40, 9)], ids=["7x7x960", "14x14x576-s2"])
def test_kernels_for_inputs_off_a_vector_boundary_of_channel_parallel_kernels_start_at_the_last_aligned_block(
        shape, strides, group_blocks, blocks_a_pixel, limit):
    """7x7x960 runs channel blocks in parallel, 14x14x576-s2 groups of 4; so do their variants,
    with their output at the input's offset: their blocks start at the last aligned one
    (``ops/channel_blocks.py``), so that no two threads share a line of the output, on up to
    `limit` threads. A pixel takes one block more (61 for 60 vectors), rounded up to whole
    groups (40 for 36)."""
    from dwc_compiler.schedules import aligned_variants
    from dwc_compiler.schedules.x86 import default_tiling

    target = resolve_target("x86-avx512")
    spec = dwc.DepthwiseSpec.create(shape, (3, 3, shape[3], 1), strides, "SAME")
    main, _ = apply_rules(prim_func(spec), spec, target)
    vectors = spec.in_channels // default_tiling(spec, target).block
    assert _parallel_extent(main) == vectors // group_blocks
    variants = aligned_variants(spec, target, main)
    assert sorted(variants.by_offset) == [16, 32, 48] and variants.max_threads == limit
    for channel_blocks, make in variants.by_offset.values():
        assert channel_blocks.count == blocks_a_pixel and channel_blocks.first == vectors - 1
        assert _parallel_extent(make()) == blocks_a_pixel // group_blocks


def test_kernels_for_inputs_off_a_vector_boundary_run_row_tiles_in_parallel():
    """The variants place their output at the input's offset, so a pixel's channels no longer
    end on a cache line: where their usual kernel runs row tiles in parallel (56x56x144-s2), so
    do they, and no thread shares a line with the other."""
    from dwc_compiler.schedules import aligned_variants
    from dwc_compiler.schedules.x86 import default_tiling

    target = resolve_target("x86-avx512")
    spec = dwc.DepthwiseSpec.create((1, 56, 56, 144), (3, 3, 144, 1), 2, "SAME")
    main, _ = apply_rules(prim_func(spec), spec, target)
    tiling = default_tiling(spec, target)
    variants = aligned_variants(spec, target, main)
    assert sorted(variants.by_offset) == [16, 32, 48] and variants.max_threads is None
    assert all(channel_blocks.first == 0 for channel_blocks, _ in variants.by_offset.values())
    for schedule in (main, *(make() for _, make in variants.by_offset.values())):
        assert _parallel_extent(schedule) == spec.out_height // tiling.tile_rows


@pytest.mark.parametrize("target_name, input_shape, strides, filter_size, vectors, rows, dtype", [
    ("x86-avx512", (1, 3, 16, 112), 1, 3, 7, 2, "float64"),  # 14 vectors of 8 doubles a row: 7 of them
    ("x86-avx512", (1, 3, 16, 112), 1, 3, 7, 2, "float16"),  # float16 sums in 16 float32 lanes
    ("x86-avx512", (1, 3, 16, 112), 1, 3, 7, 2, "float32"),  # 112 columns: 7 vectors a row, 2 rows
    ("x86-avx512", (1, 3, 16, 56), 2, 3, 2, 4, "float32"),   # 28 output columns: both vectors, 4 rows
    ("x86-avx512", (1, 4, 28, 28), 1, 5, 2, 2, "float32"),   # a 5x5 window's 25 taps leave 5 sums: 2 rows of 2
    ("x86-avx512", (1, 4, 7, 7), 1, 3, 1, 7, "float32"),     # one vector a row: the whole 7-row plane
    ("x86-avx2", (1, 3, 16, 112), 1, 3, 1, 2, "float32"),    # 16 registers: one vector by 2 rows
    ("x86-avx2", (1, 3, 16, 56), 2, 3, 1, 2, "float32"),     # at stride 2 too
    ("x86-avx2", (1, 3, 7, 7), 1, 3, 1, 7, "float32"),       # 7 rows: the smallest divisor above 1
    ("x86-avx2", (1, 3, 15, 15), 1, 5, 1, 3, "float32"),     # 15 rows: 3 (a 5x5 window)
    ("x86-avx512", (1, 2, 13, 28), 1, 3, 2, 1, "float32"),   # a prime height: 1 row nearer the 4 wanted than 13
])
def test_nchw_register_tile_takes_whole_rows_and_computes_the_reference(target_name, input_shape, strides,
                                                                        filter_size, vectors, rows, dtype):
    """The x86 NCHW register tile (``schedules/x86.py``, ``nchw_tiling``) on AVX-512 takes the
    vectors of an output row (all of them where they are up to 7 and fit the sums' budget, what
    the window's taps leave of the registers) by the divisor of the height nearest the rows that
    make about 8 sums; on AVX2 one vector by 2 rows (the smallest divisor of the height above 1);
    and each such tile's kernel matches the float64 reference."""
    from dwc_compiler.schedules.x86 import default_tiling

    from helpers import check_against_reference, skip_unless_this_cpu_runs

    channels = input_shape[1]
    filter_shape = (filter_size, filter_size, channels, 1)
    spec = dwc.DepthwiseSpec.create(input_shape, filter_shape, strides, "SAME", "NCHW", dtype=dtype)
    tiling = default_tiling(spec, resolve_target(target_name))
    assert (tiling.vectors_per_block, tiling.tile_rows) == (vectors, rows)
    skip_unless_this_cpu_runs(target_name)
    check_against_reference(input_shape, filter_shape, strides, "SAME", "NCHW", dtype=dtype, target=target_name)


@pytest.mark.parametrize("input_shape, strides, tile", [
    ((1, 8, 112, 32), 1, (2, 2, 2)),   # a band of 4 rows x 112 x 64 B = 28 KB: both vectors, 2x2 pixels
    ((1, 12, 112, 96), 2, (3, 2, 2)),  # 5 rows at stride 2: 36 KB, 3 of the 6 vectors
    ((1, 16, 56, 144), 1, (1, 2, 4)),  # row tiles in parallel, a 14 KB band: one vector in 2x4 pixels
    ((1, 16, 112, 16), 1, (1, 2, 4)),  # a 28 KB band but one vector a pixel: nothing to widen
])
def test_nhwc_wide_planes_take_channel_blocks_of_several_vectors(input_shape, strides, tile):
    """NHWC row tiles in parallel sweep their input rows once per channel block; where one
    block's band of them passes half an L1 (``schedules/x86.py``), a block takes up to 3 vectors
    (as many as divide the pixel's, more than one) in a small pixel tile. Checks the tile on
    AVX-512 (AVX2 keeps one vector: unmeasured there) and that the kernel matches the float64
    reference."""
    from dwc_compiler.schedules.x86 import default_tiling

    from helpers import check_against_reference, skip_unless_this_cpu_runs

    filter_shape = (3, 3, input_shape[3], 1)
    spec = dwc.DepthwiseSpec.create(input_shape, filter_shape, strides, "SAME")
    tiling = default_tiling(spec, resolve_target("x86-avx512"))
    assert (tiling.vectors_per_block, tiling.tile_rows, tiling.tile_cols) == tile
    assert default_tiling(spec, resolve_target("x86-avx2")).vectors_per_block == 1
    skip_unless_this_cpu_runs("x86-avx512")
    check_against_reference(input_shape, filter_shape, strides, "SAME", target="x86-avx512")
