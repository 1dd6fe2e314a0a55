"""Kernels for NHWC inputs off a vector boundary (ops/channel_blocks.py): every input offset gives
the reference's result, the output is placed at the input's offset, and the variants survive
export; the rule makes them only where they pay."""

from __future__ import annotations

import json

import numpy as np
import pytest

import dwc_compiler as dwc
from dwc_compiler.build import scheduled
from dwc_compiler.ops.channel_blocks import ChannelBlocks
from dwc_compiler.ops.compare import TOLERANCES, max_relative_error
from dwc_compiler.ops.depthwise import filter_from_hwcm
from dwc_compiler.schedules import aligned_variants
from dwc_compiler.targets import resolve_target
from dwc_compiler.workloads import MOBILENET_V2

from helpers import skip_unless_this_cpu_runs

# 7x7 outputs at stride 2, 24 vectors of channels: a layer the x86 rule makes variants for (a
# 1x7 tile, row tiles in parallel).
SHAPE, WINDOW, STRIDES = (1, 14, 14, 384), (3, 3, 384, 1), 2
# A layer with variants on every x86 target and dtype: 28x28x192-s2 (row tiles in parallel on
# AVX2, whose channel groups in parallel have none; a record's tile, or groups, on AVX-512).
EVERY_TARGET_SHAPE, EVERY_TARGET_WINDOW = (1, 28, 28, 192), (3, 3, 192, 1)


def _filled(shape, dtype, offset: int, seed: int) -> np.ndarray:
    array = dwc.empty_aligned(shape, dtype, offset)
    array[...] = np.random.default_rng(seed).standard_normal(shape)
    return array


def _block_starts(blocks: ChannelBlocks) -> list[int]:
    from tvm import tirx

    # On constants, TIR's arithmetic folds to a constant.
    return [int(blocks.channel(tirx.IntImm("int32", block * blocks.lanes))) for block in range(blocks.count)]


def test_channel_blocks_cover_every_channel_with_aligned_interior_blocks():
    blocks = ChannelBlocks.for_tile(lanes=16, phase=4, channels=64, blocks_per_task=1)
    starts = _block_starts(blocks)
    assert starts == [0, 12, 28, 44, 48]
    assert {start + lane for start in starts for lane in range(16)} == set(range(64))
    # Blocks for a tile of 2 repeat the last one to make a whole tile.
    assert _block_starts(ChannelBlocks.for_tile(16, 4, 64, blocks_per_task=2)) == [0, 12, 28, 44, 48, 48]
    # With the blocks that share lines first: from the last aligned block, round the pixel.
    assert _block_starts(ChannelBlocks.for_tile(16, 4, 64, 1, shared_lines_first=True)) == [44, 48, 0, 12, 28]
    assert _block_starts(ChannelBlocks.for_tile(16, 4, 64, 2, shared_lines_first=True)) == [44, 48, 48, 0, 12, 28]


def _lines_written(blocks: ChannelBlocks, starts: list[int], tiles, offset_bytes: int, pixels: int) -> set[int]:
    """The 64-byte lines of a float32 output at `offset_bytes` past a line that the register tiles
    `tiles` (of ``blocks``, one block each, starting at the channels `starts`) write over `pixels`
    pixels."""
    return {(offset_bytes + 4 * (pixel * blocks.channels + starts[tile] + lane)) // 64
            for pixel in range(pixels) for tile in tiles for lane in range(blocks.lanes)}


def _threads_share_a_line(blocks: ChannelBlocks, threads: int, phase: int, blocks_per_task: int = 1) -> bool:
    """Whether two of `threads` threads write one output line, the tasks (of `blocks_per_task`
    blocks) split as TVM's parallel loop splits them (contiguous ranges of ceil(n / threads))."""
    tasks = blocks.count // blocks_per_task
    chunk = -(-tasks // threads) * blocks_per_task
    parts = [range(start, min(start + chunk, blocks.count)) for start in range(0, blocks.count, chunk)]
    starts = _block_starts(blocks)
    written = [_lines_written(blocks, starts, part, 4 * phase, pixels=3) for part in parts]
    return any(written[a] & written[b] for a in range(len(parts)) for b in range(a + 1, len(parts)))


@pytest.mark.parametrize("channels, blocks_per_task, limit", [(384, 1, 8), (576, 1, 12), (960, 1, 20), (576, 4, 9),
                                                             (384, 3, 8)],
                         ids=["14x14x384", "14x14x576", "7x7x960", "14x14x576-s2", "14x14x384-s2"])
@pytest.mark.parametrize("phase", [4, 8, 12])
def test_threads_of_channel_parallel_variants_share_no_output_line(channels, blocks_per_task, limit, phase):
    """The blocks of the channel-parallel variants (14x14x384, 14x14x576, 7x7x960 one block a
    task; 14x14x576-s2 groups of 4, 14x14x384-s2 of 3) write disjoint output lines per thread on
    up to `max_threads` threads, and share one on a thread more; in their own order two threads
    shared lines."""
    blocks = ChannelBlocks.for_tile(16, phase, channels, blocks_per_task, shared_lines_first=True)
    assert blocks.max_threads(batch=1, blocks_per_task=blocks_per_task) == limit
    assert not any(_threads_share_a_line(blocks, threads, phase, blocks_per_task) for threads in range(2, limit + 1))
    assert _threads_share_a_line(blocks, limit + 1, phase, blocks_per_task)
    assert _threads_share_a_line(ChannelBlocks.for_tile(16, phase, channels, blocks_per_task), 2, phase,
                                 blocks_per_task)


@pytest.mark.parametrize("target", ["host", "x86-avx2"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("epilogue", [{}, {"bias": True, "activation": "relu6"}], ids=["plain", "bias-relu6"])
def test_every_input_offset_matches_the_reference(target, dtype, epilogue):
    skip_unless_this_cpu_runs(target)
    dwc.clear_kernel_cache()  # a kernel fresh from its build: no variant compiled yet
    weights = _filled(EVERY_TARGET_WINDOW, dtype, 0, seed=1)
    bias = _filled((EVERY_TARGET_SHAPE[3],), dtype, 0, seed=2) if epilogue else None
    activation = epilogue.get("activation")
    kernel = dwc.depthwise_kernel(_filled(EVERY_TARGET_SHAPE, dtype, 0, 0), weights, STRIDES, "SAME", target=target,
                                  bias=bias, activation=activation)
    if kernel.target.family != "x86":
        pytest.skip("variants for inputs off a vector boundary exist for x86 vectors (NEON's are 16 bytes)")
    entries = kernel.loaded.aligned_entries
    assert entries is not None and set(entries.names) == set(range(16, entries.vector_bytes, 16))
    assert kernel.loaded.aligned_invokes == {}  # each compiles on first use
    itemsize = np.dtype(dtype).itemsize
    for offset in sorted({0, itemsize, 16, 32, 48}):
        data = _filled(EVERY_TARGET_SHAPE, dtype, offset, seed=offset)
        result = dwc.depthwise_conv2d(data, weights, STRIDES, "SAME", target=target, bias=bias,
                                      activation=activation)
        error = max_relative_error(result, kernel.spec.reference(data, weights, *([bias] if epilogue else [])))
        assert error <= TOLERANCES[dtype], f"input {offset} bytes past 64: max relative error {error:.3g}"
        has_variant = offset % entries.vector_bytes in entries.names
        assert result.ctypes.data % entries.vector_bytes == (offset % entries.vector_bytes if has_variant else 0)
    assert set(kernel.loaded.aligned_invokes) == set(entries.names)  # every offset has been met


@pytest.mark.parametrize("input_shape, filter_shape, options", [
    ((1, 28, 28, 192), (3, 3, 192, 1), {"strides": 2}),  # the shipped record's tile: 2 vectors, 14 blocks
    ((1, 14, 14, 384), (3, 3, 384, 1), {"dtype": "float16", "strides": 2}),  # 32-byte vectors: offset 16
    ((1, 14, 14, 384), (3, 3, 384, 1), {"filter_format": "OIHW", "strides": 2}),
    ((1, 14, 14, 96), (3, 3, 96, 1), {"filter_format": "GOIHW", "dilations": 2}),  # 6 blocks: row tiles
    ((2, 28, 28, 128), (3, 3, 128, 1), {"strides": 2, "bias": True, "activation": "relu"}),
], ids=["record-tile", "float16", "OIHW", "GOIHW-dilated", "batch2-s2-relu"])
def test_variants_of_other_forms_match_the_reference(input_shape, filter_shape, options):
    """Each at the offsets that have variants, against the float64 reference of the TF form."""
    skip_unless_this_cpu_runs("x86-avx512")
    options = dict(options)
    dtype = options.pop("dtype", "float32")
    filter_format, with_bias = options.pop("filter_format", "HWCM"), options.pop("bias", False)
    weights = _filled(filter_shape, dtype, 0, seed=1)
    passed_filter = np.ascontiguousarray(filter_from_hwcm(weights, filter_format))
    bias = [_filled((filter_shape[2],), dtype, 0, seed=2)] if with_bias else []
    arguments = dict(strides=options.pop("strides", 1), padding="SAME", target="x86-avx512",
                     filter_format=filter_format, bias=bias[0] if bias else None, **options)
    kernel = dwc.depthwise_kernel(_filled(input_shape, dtype, 0, 0), passed_filter, **arguments)
    assert kernel.loaded.aligned_entries is not None, "the rule made no variants for this layer"
    reference_spec = dwc.DepthwiseSpec.create(input_shape, filter_shape, arguments["strides"], "SAME",
                                              dilations=options.get("dilations"), dtype=dtype, with_bias=with_bias,
                                              activation=options.get("activation"))
    for offset in kernel.loaded.aligned_entries.names:
        data = _filled(input_shape, dtype, offset, seed=offset)
        result = dwc.depthwise_conv2d(data, passed_filter, **arguments)
        error = max_relative_error(result, reference_spec.reference(data, weights, *bias))
        assert error <= TOLERANCES[dtype], f"input {offset} bytes past 64: max relative error {error:.3g}"


def test_pytorch_tensors_off_a_vector_boundary():
    torch = pytest.importorskip("torch")
    skip_unless_this_cpu_runs("x86-avx512")
    weights = _filled(WINDOW, "float32", 0, seed=1)
    data = _filled(SHAPE, "float32", 16, seed=0)
    expected = dwc.DepthwiseSpec.create(SHAPE, WINDOW, STRIDES, "SAME").reference(data, weights)
    result = dwc.depthwise_conv2d(torch.from_numpy(data), torch.from_numpy(weights), STRIDES, "SAME",
                                  target="x86-avx512")
    assert result.ctypes.data % 64 == 16
    assert max_relative_error(result, expected) <= TOLERANCES["float32"]


def test_out_argument_and_copied_inputs_at_other_offsets():
    skip_unless_this_cpu_runs("x86-avx512")
    weights = _filled(WINDOW, "float32", 0, seed=1)
    data = _filled(SHAPE, "float32", 16, seed=0)
    kernel = dwc.depthwise_kernel(data, weights, STRIDES, "SAME", target="x86-avx512")
    expected = kernel.spec.reference(data, weights)
    out = dwc.empty_aligned(kernel.spec.output_shape, "float32", 48)
    assert kernel(data, weights, out=out) is out
    assert max_relative_error(out, expected) <= TOLERANCES["float32"]
    read_only = data.copy()
    read_only.flags.writeable = False  # DLPack refuses it: the checked path copies it
    assert max_relative_error(kernel(read_only, weights), expected) <= TOLERANCES["float32"]
    with dwc.num_threads(2):
        assert max_relative_error(kernel(data, weights), expected) <= TOLERANCES["float32"]


def test_exported_kernel_keeps_its_variants(tmp_path):
    skip_unless_this_cpu_runs("x86-avx512")
    weights = _filled(WINDOW, "float32", 0, seed=1)
    data = _filled(SHAPE, "float32", 16, seed=0)
    library = dwc.depthwise_kernel(data, weights, STRIDES, "SAME", target="x86-avx512").export(tmp_path / "k.so")
    manifest = json.loads(library.with_name("k.so.json").read_text())
    # 14x14x384-s2 runs groups of 3 channel blocks in parallel: 27 blocks a pixel in 9 tasks, the
    # first 2 of which share lines, so up to 8 threads (ChannelBlocks.max_threads).
    assert manifest["aligned_entries"] == {"vector_bytes": 64, "max_threads": 8,
                                           "names": {"16": "main_at16", "32": "main_at32", "48": "main_at48"}}
    loaded = dwc.load(library)
    assert set(loaded.loaded.aligned_invokes) == {16, 32, 48}
    result = loaded(data, weights)
    assert result.ctypes.data % 64 == 16
    assert max_relative_error(result, loaded.spec.reference(data, weights)) <= TOLERANCES["float32"]
    # A kernel that runs channel blocks in parallel runs its variants on up to the threads its
    # manifest names (8 for 14x14x384-s1); one whose manifest marks them for one thread only (an
    # older dwc's) keeps them to one.
    channel_parallel = MOBILENET_V2["mbv2-14x14x384-s1"]
    exported = dwc.build(channel_parallel, "x86-avx512").export(tmp_path / "channels.so")
    channels_manifest = json.loads(exported.with_name("channels.so.json").read_text())
    assert channels_manifest["aligned_entries"]["max_threads"] == 8
    channel_weights = _filled(channel_parallel.filter_shape, "float32", 0, seed=1)
    channel_input = _filled(channel_parallel.input_shape, "float32", 16, seed=0)
    expected = channel_parallel.reference(channel_input, channel_weights)
    older = {key: value for key, value in channels_manifest["aligned_entries"].items() if key != "max_threads"}
    for entries, limit, offsets in ((channels_manifest["aligned_entries"], 8, (16, 16)),
                                    ({**older, "single_thread": True}, 1, (16, 0))):
        exported.with_name("channels.so.json").write_text(json.dumps({**channels_manifest, "aligned_entries": entries}))
        reloaded = dwc.load(exported)
        assert reloaded.loaded.aligned_entries.max_threads == limit
        for threads, output_offset in zip((1, 2), offsets):
            with dwc.num_threads(threads):
                result = reloaded(channel_input, channel_weights)
                assert result.ctypes.data % 64 == output_offset
                assert max_relative_error(result, expected) <= TOLERANCES["float32"]
    # A module whose manifest has no variants (an older dwc's) runs main for every input.
    del manifest["aligned_entries"]
    library.with_name("k.so.json").write_text(json.dumps(manifest))
    older = dwc.load(library)
    assert older.loaded.aligned_invokes == {} and older(data, weights).ctypes.data % 64 == 0
    # One that names a function the library lacks is refused, by name.
    manifest["aligned_entries"] = {"vector_bytes": 64, "names": {"16": "main_at99"}}
    library.with_name("k.so.json").write_text(json.dumps(manifest))
    with pytest.raises(dwc.IncompatibleModuleError, match="main_at99"):
        dwc.load(library)


def _variants(spec, target_name="x86-avx512"):
    target = resolve_target(target_name)
    return aligned_variants(spec, target, scheduled(spec, target)[0]).by_offset


# Each differs from a layer with variants (SHAPE: 14x14x384-s2, a 1x7 tile) in the one way it names.
@pytest.mark.parametrize("why, spec", [
    ("NCHW", dwc.DepthwiseSpec.create((1, 384, 14, 14), (3, 3, 384, 1), 2, "SAME", "NCHW")),
    ("a channel multiplier", dwc.DepthwiseSpec.create((1, 14, 14, 192), (3, 3, 192, 2), 2, "SAME")),
    ("channels no whole number of vectors", dwc.DepthwiseSpec.create((1, 14, 14, 392), (3, 3, 392, 1), 2, "SAME")),
    ("too few outputs", dwc.DepthwiseSpec.create((1, 14, 14, 320), (3, 3, 320, 1), 2, "SAME")),
    ("a 2x4 tile, whose split loads cost less than a block more", MOBILENET_V2["mbv2-28x28x192-s1"]),
    ("a 2x2 tile at stride 1 under row tiles in parallel (6 blocks), whose rows share input rows",
     dwc.DepthwiseSpec.create((1, 14, 14, 96), (3, 3, 96, 1), 1, "SAME")),
    ("an input larger than L2", MOBILENET_V2["mbv2-112x112x96-s2"]),
])
def test_no_variants_where_they_do_not_pay(why, spec):
    assert _variants(spec) == {}, why


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_no_variants_for_avx2_channel_groups(dtype):
    """On AVX2 a channel block is half a cache line: small planes run groups of 4 blocks (two
    lines) in parallel, and such kernels take no variants (they lost to ``main``); SHAPE has
    them on AVX-512."""
    from dwc_compiler.schedules.cpu import channel_group_blocks
    from dwc_compiler.schedules.x86 import default_tiling

    spec = dwc.DepthwiseSpec.create(SHAPE, WINDOW, STRIDES, "SAME", dtype=dtype)
    target = resolve_target("x86-avx2")
    assert channel_group_blocks(spec, default_tiling(spec, target)) == 4
    assert _variants(spec, "x86-avx2") == {}


# The threads the variants serve (ChannelBlocks.max_threads): 14x14x384-s1 runs one block a task,
# 25 (float32) or 49 (float64) a pixel; 14x14x576-s2 groups of 4, 40 or 76 blocks a pixel.
CHANNEL_PARALLEL_LIMITS = {("mbv2-14x14x384-s1", "float32"): 8, ("mbv2-14x14x384-s1", "float64"): 16,
                           ("mbv2-14x14x576-s2", "float32"): 9, ("mbv2-14x14x576-s2", "float64"): 18}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype, epilogue", [("float32", {}), ("float64", {"bias": True, "activation": "relu6"})],
                         ids=["float32", "float64-bias-relu6"])
@pytest.mark.parametrize("layer", ["mbv2-14x14x384-s1", "mbv2-14x14x576-s2"])
def test_variants_of_channel_parallel_kernels_run_on_several_threads(layer, threads, dtype, epilogue):
    """14x14x384-s1 runs channel blocks in parallel, 14x14x576-s2 groups of 4 of them; so do
    their variants, on one thread or two (of up to ``CHANNEL_PARALLEL_LIMITS``), writing the
    output at the input's offset, with the reference's result, through the lean call and the
    checked one."""
    skip_unless_this_cpu_runs("x86-avx512")
    dwc.clear_kernel_cache()  # a kernel fresh from its build: no variant compiled yet
    spec = MOBILENET_V2[layer]
    weights = _filled(spec.filter_shape, dtype, 0, seed=1)
    bias = [_filled((spec.out_channels,), dtype, 0, seed=2)] if epilogue else []
    kernel = dwc.depthwise_kernel(_filled(spec.input_shape, dtype, 0, 0), weights, spec.strides, "SAME",
                                  target="x86-avx512", bias=bias[0] if bias else None,
                                  activation=epilogue.get("activation"))
    limit = CHANNEL_PARALLEL_LIMITS[layer, dtype]
    assert kernel.loaded.aligned_entries is not None and kernel.loaded.aligned_entries.max_threads == limit
    vector_bytes = kernel.loaded.aligned_entries.vector_bytes
    with dwc.num_threads(threads):
        for offset in kernel.loaded.aligned_entries.names:
            data = _filled(spec.input_shape, dtype, offset, seed=offset)
            expected = kernel.spec.reference(data, weights, *bias)
            lean, checked = kernel(data, weights, *bias), kernel._checked_call((data, weights, *bias), None)
            for result in (lean, checked):
                assert max_relative_error(result, expected) <= TOLERANCES[dtype]
                assert result.ctypes.data % vector_bytes == offset
    assert set(kernel.loaded.aligned_invokes) == set(kernel.loaded.aligned_entries.names)


def test_the_layer_those_differ_from_has_variants():
    assert sorted(_variants(dwc.DepthwiseSpec.create(SHAPE, WINDOW, STRIDES, "SAME"))) == [16, 32, 48]


def test_variants_only_for_x86_and_with_the_main_kernels_tile_and_order():
    """28x28x192-s2 builds from a shipped record (2 vectors a block, row tiles in parallel),
    whose tile and loop order its variants take (its hand schedule would run one block a task
    in parallel); 14x14x576-s2's hand schedule runs groups of 4 blocks in parallel, and so do
    its variants."""
    spec = MOBILENET_V2["mbv2-28x28x192-s2"]
    assert _variants(spec, "aarch64-neon") == {}
    target = resolve_target("x86-avx512")
    main, name, _ = scheduled(spec, target)
    assert name.startswith("rec-")
    variants = aligned_variants(spec, target, main)
    assert sorted(variants.by_offset) == [16, 32, 48] and variants.max_threads is None
    blocks, _ = variants.by_offset[16]
    # The shipped record's tile holds 2 vectors per block: 12 vectors + 1, rounded up to 14.
    assert (blocks.lanes, blocks.phase, blocks.count, blocks.first) == (16, 4, 14, 0)
    grouped = MOBILENET_V2["mbv2-14x14x576-s2"]
    hand, name, _ = scheduled(grouped, target)
    assert name == "hand:x86"
    hand_variants = aligned_variants(grouped, target, hand)
    hand_blocks, _ = hand_variants.by_offset[16]
    # 36 vectors + 1 in groups of 4: 40 blocks a pixel from the last aligned one, the first 7
    # (2 groups) sharing lines.
    assert (hand_blocks.count, hand_blocks.first, hand_variants.max_threads) == (40, 35, 9)
