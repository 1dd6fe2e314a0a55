"""Which loop runs in parallel in the NHWC CPU kernels: row tiles, or channel blocks.

usage: python benchmarks/loop_order.py [ROUNDS]

For each MobileNetV2 depthwise layer (NHWC, the x86 hand schedule), two kernels that differ only in
their outer loops (``schedules/cpu.py`` ``channel_blocks_outer``): row tiles in parallel over
all channel blocks, or channel blocks in parallel, each over all its rows. Whole
``Kernel.call`` calls at 1 and at 2 threads, interleaved rounds (each block warmed up first), on
a 64-byte-aligned input (where both kernels run their ``main``) and on the input as NumPy
allocates it (where a layer with kernels for inputs off a vector boundary runs those, which keep
row tiles in parallel in both). The table gives the medians, the channel-outer kernel's time
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
from dwc_compiler.workloads import MOBILENET_V2

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_CALLS, TIMED_CALLS = 5, 20
THREADS = (1, 2)


def _kernel(spec, channel_outer: bool):
    """The hand-scheduled kernel of `spec` with the given outer loop order."""
    rule = cpu.channel_blocks_outer
    cpu.channel_blocks_outer = lambda *args: channel_outer
    try:
        return dwc.build(spec, "host", use_records=False)
    finally:
        cpu.channel_blocks_outer = rule


def measure(name: str, spec, rounds: int) -> dict:
    """Both orders of one layer, at each thread count, on an aligned and on NumPy's input."""
    rng = np.random.default_rng(0)
    inputs = {"numpy": rng.random(spec.input_shape).astype(np.float32)}  # as NumPy allocates it
    inputs["aligned"] = dwc.empty_aligned(spec.input_shape, np.float32)
    inputs["aligned"][...] = inputs["numpy"]
    weights = rng.random(spec.filter_shape).astype(np.float32)
    kernels = {"rows": _kernel(spec, False), "channels": _kernel(spec, True)}
    expected = kernels["rows"](inputs["aligned"], weights)
    for kernel in kernels.values():
        for data in inputs.values():
            np.testing.assert_allclose(kernel(data, weights), expected, rtol=1e-5, atol=1e-6)
    picks = cpu.channel_blocks_outer(spec, x86.default_tiling(spec, kernels["rows"].target))
    row = {"layer": name, "rule_picks": "channels" if picks else "rows",
           "numpy_input_offset": int(inputs["numpy"].ctypes.data % 64)}
    calls = {f"{order} {kind}": (lambda kernel=kernel, data=data: kernel.call(data, weights))
             for order, kernel in kernels.items() for kind, data in inputs.items()}
    for threads in THREADS:
        dwc.set_num_threads(threads)
        samples = interleaved_rounds(calls, rounds, WARMUP_CALLS, TIMED_CALLS)
        row[f"{threads}t"] = {"median_us": {way: statistics.median(values) for way, values in samples.items()},
                              "channels_over_rows": {kind: median_ratio(samples[f"channels {kind}"],
                                                                        samples[f"rows {kind}"]) for kind in inputs},
                              "samples_us": samples}
    dwc.set_num_threads(1)
    row["speed_up_2t"] = {way: row["1t"]["median_us"][way] / row["2t"]["median_us"][way] for way in calls}
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
              f"rounds of the four calls (reversed every other round), each block {WARMUP_CALLS} warm-up then "
              f"{TIMED_CALLS} timed calls (block mean); medians over rounds, ratios medians of per-round ratios")
    table = ["| layer | input | 1 thread: rows / channels in parallel (us) | channels / rows | 2 threads: rows / "
             "channels (us) | channels / rows | 2-thread speed-up: rows / channels | the rule picks |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        one, two = row["1t"], row["2t"]
        for kind in ("aligned", "numpy"):
            label = "aligned" if kind == "aligned" else f"NumPy's (+{row['numpy_input_offset']} B)"
            table.append(
                f"| {row['layer']} | {label} | {one['median_us'][f'rows {kind}']:.1f} / "
                f"{one['median_us'][f'channels {kind}']:.1f} | {one['channels_over_rows'][kind]:.2f} | "
                f"{two['median_us'][f'rows {kind}']:.1f} / {two['median_us'][f'channels {kind}']:.1f} | "
                f"{two['channels_over_rows'][kind]:.2f} | {row['speed_up_2t'][f'rows {kind}']:.2f} / "
                f"{row['speed_up_2t'][f'channels {kind}']:.2f} | {row['rule_picks']} |")
    write_results(RESULTS, "loop-order", "NHWC kernels: row tiles or channel blocks in parallel", method,
                  {"rounds": rounds, "rows": rows}, table)


if __name__ == "__main__":
    main()
