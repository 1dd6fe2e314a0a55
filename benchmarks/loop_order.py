"""Which loop runs in parallel in the NHWC CPU kernels: row tiles, or groups of channel blocks.

usage: python benchmarks/loop_order.py [ROUNDS]

For each MobileNetV2 depthwise layer (NHWC, the x86 hand schedule), two kernels that differ only in
their outer loops (``schedules/cpu.py`` ``channel_group_blocks``): row tiles in parallel over
all channel blocks, or channel groups (of ``cpu.group_size`` blocks, at least one) in parallel,
each over all its rows. Whole ``Kernel.call`` calls at 1 and at 2 threads, interleaved rounds
(each block warmed up first), on a 64-byte-aligned input (where both kernels run their
``main``) and on the input as NumPy allocates it (where a layer with kernels for inputs off a
vector boundary runs those, in the kernel's order; at 2 threads the channel-parallel ones serve
calls on up to their ``max_threads``). The table gives the medians, the channel-outer kernel's time
over the row-outer one's (the median of the per-round ratios), each order's 2-thread speed-up,
and which order the rule picks. Writes benchmarks/results/loop-order-<stamp>.json
and .md with the machine it ran on.
"""

import statistics
from pathlib import Path

import numpy as np

import dwc_compiler as dwc
from dwc_compiler.benchmarking.interleaved import int_arguments, interleaved_rounds, median_ratio, write_results
from dwc_compiler.schedules import cpu, x86
from dwc_compiler.targets import resolve_target
from dwc_compiler.workloads import MOBILENET_V2

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_CALLS, TIMED_CALLS = 5, 20
THREADS = (1, 2)
OUTPUT_PLACES, PLACE_STEP_BYTES = 6, 17 * 64


def _kernel(spec, group_blocks: int):
    """The hand-scheduled kernel of `spec` (its variants for inputs off a vector boundary
    included) with channel groups of `group_blocks` blocks in parallel (0: row tiles)."""
    rule = cpu.channel_group_blocks
    cpu.channel_group_blocks = lambda *args: group_blocks
    try:
        return dwc.build(spec, "host", use_records=False)
    finally:
        cpu.channel_group_blocks = rule


def _output_places(spec, offset: int) -> list[np.ndarray]:
    """`OUTPUT_PLACES` outputs of `spec` at `offset` bytes past a 64-byte boundary (where the
    kernel would place its own), each starting 17 cache lines past the end of the last in one
    buffer: where an
    output lies changes a kernel's time by up to 1.45x (``output-placement-20261201-1526.md``)."""
    size = int(np.prod(spec.output_shape))
    step = size + PLACE_STEP_BYTES // 4
    pool = dwc.empty_aligned((step * OUTPUT_PLACES + 16,), np.float32)
    start = offset // 4
    return [pool[start + place * step:start + place * step + size].reshape(spec.output_shape)
            for place in range(OUTPUT_PLACES)]


def _geomean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values))))


def measure(name: str, spec, rounds: int) -> dict:
    """Both orders of one layer, at each thread count, on an aligned and on NumPy's input."""
    rng = np.random.default_rng(0)
    inputs = {"numpy": rng.random(spec.input_shape).astype(np.float32)}  # as NumPy allocates it
    inputs["aligned"] = dwc.empty_aligned(spec.input_shape, np.float32)
    inputs["aligned"][...] = inputs["numpy"]
    weights = rng.random(spec.filter_shape).astype(np.float32)
    tiling = x86.default_tiling(spec, resolve_target("host"))
    group_blocks = max(cpu.group_size(spec, tiling), 1)  # the rule's size, whatever the plane
    kernels = {"rows": _kernel(spec, 0), "channels": _kernel(spec, group_blocks)}
    expected = kernels["rows"](inputs["aligned"], weights)
    for kernel in kernels.values():
        for data in inputs.values():
            np.testing.assert_allclose(kernel(data, weights), expected, rtol=1e-5, atol=1e-6)
    picks = cpu.channel_group_blocks(spec, tiling)
    row = {"layer": name, "rule_picks": f"channels ({picks} a task)" if picks else "rows",
           "group_blocks": group_blocks,
           "numpy_input_offset": int(inputs["numpy"].ctypes.data % 64)}
    outputs = {kind: _output_places(spec, int(data.ctypes.data % 64)) for kind, data in inputs.items()}
    calls = {f"{order} {kind} {place}": (lambda kernel=kernel, data=data, out=out: kernel.call(data, weights, out=out))
             for order, kernel in kernels.items() for kind, data in inputs.items()
             for place, out in enumerate(outputs[kind])}
    for threads in THREADS:
        dwc.set_num_threads(threads)
        samples = interleaved_rounds(calls, rounds, WARMUP_CALLS, TIMED_CALLS)
        # Per order and input: each round's mean over the output's places.
        by_way = {f"{order} {kind}": [statistics.fmean(values) for values in zip(
            *(samples[f"{order} {kind} {place}"] for place in range(OUTPUT_PLACES)))]
            for order in kernels for kind in inputs}
        row[f"{threads}t"] = {"median_us": {way: statistics.median(values) for way, values in by_way.items()},
                              "channels_over_rows": {kind: _geomean([median_ratio(
                                  samples[f"channels {kind} {place}"], samples[f"rows {kind} {place}"])
                                  for place in range(OUTPUT_PLACES)]) for kind in inputs},
                              "samples_us": samples}
    dwc.set_num_threads(1)
    row["speed_up_2t"] = {way: row["1t"]["median_us"][way] / row["2t"]["median_us"][way]
                          for way in row["1t"]["median_us"]}
    return row


def main() -> None:
    (rounds,) = int_arguments(15)
    rows = []
    for name, spec in MOBILENET_V2.items():
        row = measure(name, spec, rounds)
        rows.append(row)
        print(f"{name:22s} " + " | ".join(
            f"{kind} channels/rows 1t {row['1t']['channels_over_rows'][kind]:.2f} 2t "
            f"{row['2t']['channels_over_rows'][kind]:.2f}, 2t speed-up rows {row['speed_up_2t'][f'rows {kind}']:.2f} "
            f"channels {row['speed_up_2t'][f'channels {kind}']:.2f}" for kind in ("aligned", "numpy"))
            + f" | rule: {row['rule_picks']}", flush=True)
    method = (f"hand schedules (no records), whole Kernel.call calls; at 1 and 2 threads, {rounds} interleaved "
              f"rounds (reversed every other round) of each order on each input with its out= at each of "
              f"{OUTPUT_PLACES} places, each {PLACE_STEP_BYTES} bytes past the end of the last (at the input's "
              f"offset past a 64-byte boundary, where the kernel places its own), each block {WARMUP_CALLS} "
              f"warm-up then {TIMED_CALLS} timed calls (block mean); times: medians over rounds of the mean "
              f"over the places; ratios: geomean over the places of the median per-round ratio")
    table = ["| layer | input | 1 thread: rows / channel groups in parallel (us) | channels / rows | 2 threads: rows / "
             "channels (us) | channels / rows | 2-thread speed-up: rows / channels | blocks a task | the rule picks |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        one, two = row["1t"], row["2t"]
        for kind in ("aligned", "numpy"):
            label = "aligned" if kind == "aligned" else f"NumPy's (+{row['numpy_input_offset']} B)"
            table.append(
                f"| {row['layer']} | {label} | {one['median_us'][f'rows {kind}']:.1f} / "
                f"{one['median_us'][f'channels {kind}']:.1f} | {one['channels_over_rows'][kind]:.2f} | "
                f"{two['median_us'][f'rows {kind}']:.1f} / {two['median_us'][f'channels {kind}']:.1f} | "
                f"{two['channels_over_rows'][kind]:.2f} | {row['speed_up_2t'][f'rows {kind}']:.2f} / "
                f"{row['speed_up_2t'][f'channels {kind}']:.2f} | {row['group_blocks']} | {row['rule_picks']} |")
    write_results(RESULTS, "loop-order", "NHWC kernels: row tiles or groups of channel blocks in parallel", method,
                  {"rounds": rounds, "rows": rows}, table)


if __name__ == "__main__":
    main()
