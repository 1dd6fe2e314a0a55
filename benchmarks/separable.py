"""MobileNetV2's separable blocks: dwc's fused kernel against every library's passes.

usage: python benchmarks/separable.py [ROUNDS]

For each block (each MobileNetV2 depthwise layer with the 1x1 projection after it, 224x224,
batch 1), depthwise -> bias -> ReLU6 -> pointwise -> bias, in one process and one thread,
interleaved rounds (the order reversed every other round, each block of calls warmed up first)
of whole calls: dwc's ``separable_conv2d`` on plain NumPy arrays (NHWC and NCHW) and every peer
of ``dwc_compiler.benchmarking.separable_peers`` that is installed (``pip install .[bench]``),
each checked against the float64 reference first. Times are medians over rounds; ratios are
medians of per-round ratios against the fastest peer; each block's FLOP rate is set against the
FMA peak measured before and after the timing. Writes benchmarks/results/separable-<stamp>.json
and .md with the machine it ran on.
"""

import dataclasses
import statistics
from pathlib import Path

import numpy as np

import dwc_compiler as dwc
from dwc_compiler.benchmarking.interleaved import block_mean_us, int_arguments, median_ratio, write_results
from dwc_compiler.benchmarking.roofline import fma_peak_gflops
from dwc_compiler.benchmarking.separable_peers import available_peers, block_arrays
from dwc_compiler.workloads import MOBILENET_V2_BLOCKS

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_CALLS = 3
TIMED_MICROSECONDS = 3000  # each block of calls lasts about this long
DWC = ("dwc NHWC", "dwc NCHW")


def _checked_calls(spec, peers) -> dict:
    """Every peer's call for `spec`, each checked against the float64 reference."""
    arrays = block_arrays(spec)
    block = dataclasses.replace(spec, depthwise=dataclasses.replace(spec.depthwise, with_bias=True, activation="relu6"),
                                with_pointwise_bias=True)
    expected = block.reference(arrays.nhwc, arrays.depthwise_filter, arrays.pointwise_filter, arrays.depthwise_bias,
                               arrays.pointwise_bias)
    calls = {}
    for name, setup in peers.items():
        call, to_nhwc = setup(spec, arrays)
        result = np.asarray(to_nhwc(call()), dtype=np.float64)
        error = np.max(np.abs(result - expected)) / np.max(np.abs(expected))
        if error > 1e-4:
            raise AssertionError(f"{name} differs from the reference on {spec.describe()}: {error:.2e}")
        calls[name] = call
    return calls


def measure(name: str, spec, peers, rounds: int) -> dict:
    calls = _checked_calls(spec, peers)
    # Each peer's block of calls lasts about TIMED_MICROSECONDS.
    timed = {way: max(3, int(TIMED_MICROSECONDS / max(block_mean_us(call, 1, 3), 1.0))) for way, call in calls.items()}
    samples = {way: [] for way in calls}
    for round_index in range(rounds):
        order = list(calls) if round_index % 2 == 0 else list(reversed(calls))
        for way in order:
            samples[way].append(block_mean_us(calls[way], WARMUP_CALLS, timed[way]))
    peer_names = [way for way in calls if way not in DWC]
    medians = {way: statistics.median(values) for way, values in samples.items()}
    fastest = min(peer_names, key=lambda way: medians[way]) if peer_names else None
    row = {"block": name, "gflop": spec.flops / 1e9, "median_us": medians, "fastest_peer": fastest,
           "samples_us": samples}
    if fastest is not None:
        for way in DWC:
            row[f"fastest_peer_over_{way.replace(' ', '_')}"] = min(
                median_ratio(samples[peer], samples[way]) for peer in peer_names)
    return row


def main() -> None:
    (rounds,) = int_arguments(11)
    dwc.set_num_threads(1)
    peers, missing = available_peers()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    peak_before = fma_peak_gflops(1)
    rows = []
    for name, spec in MOBILENET_V2_BLOCKS.items():
        row = measure(name, spec, peers, rounds)
        rows.append(row)
        print(f"{name:26s} " + " ".join(f"{way} {us:7.1f}" for way, us in row["median_us"].items()), flush=True)
    fma_peak_gflops.cache_clear()
    peak_after = fma_peak_gflops(1)
    peak = max(peak_before, peak_after)
    ways = list(rows[0]["median_us"])
    method = (f"1 thread; whole calls on plain NumPy arrays (dwc, ONNX Runtime, LiteRT's set_tensor+invoke) and "
              f"tensors (PyTorch, TensorFlow); depthwise 3x3 SAME -> bias -> ReLU6 -> 1x1 pointwise -> bias; "
              f"{rounds} interleaved rounds (order reversed every other round), each block {WARMUP_CALLS} warm-up "
              f"calls then about {TIMED_MICROSECONDS} us of timed calls (block mean); times are medians over rounds, "
              f"ratios medians of per-round ratios against the fastest peer in that block; FMA peak of one thread "
              f"measured before ({peak_before:.1f} GFLOP/s) and after ({peak_after:.1f}) the timing, the higher "
              f"used; peers not installed: {', '.join(f'{k} ({v})' for k, v in missing.items()) or 'none'}")
    table = ["| block | MFLOP | " + " | ".join(f"{way} (us)" for way in ways)
             + " | fastest peer | fastest peer / dwc NHWC | fastest peer / dwc NCHW | dwc NHWC % of FMA peak |",
             "|---|---:|" + "---:|" * len(ways) + "---|---:|---:|---:|"]
    for row in rows:
        us = row["median_us"]
        rate = row["gflop"] / us["dwc NHWC"] * 1e6
        table.append(f"| {row['block']} | {row['gflop'] * 1e3:.1f} | " + " | ".join(f"{us[way]:.1f}" for way in ways)
                     + f" | {row['fastest_peer']} | {row.get('fastest_peer_over_dwc_NHWC', float('nan')):.2f} | "
                       f"{row.get('fastest_peer_over_dwc_NCHW', float('nan')):.2f} | {100 * rate / peak:.0f}% |")
    geomean = statistics.geometric_mean
    if rows[0]["fastest_peer"] is not None:
        table += ["", f"Geomean: fastest peer / dwc NHWC "
                      f"{geomean([r['fastest_peer_over_dwc_NHWC'] for r in rows]):.2f}x (lowest "
                      f"{min(r['fastest_peer_over_dwc_NHWC'] for r in rows):.2f}x), fastest peer / dwc NCHW "
                      f"{geomean([r['fastest_peer_over_dwc_NCHW'] for r in rows]):.2f}x (lowest "
                      f"{min(r['fastest_peer_over_dwc_NCHW'] for r in rows):.2f}x)."]
    write_results(RESULTS, "separable", "MobileNetV2 separable blocks: dwc's fused kernel against the libraries' passes "
                  "(1 thread)", method, {"rounds": rounds, "fma_peak_gflops": [peak_before, peak_after],
                                         "missing_peers": missing, "rows": rows}, table)
    print("\n".join(table))


if __name__ == "__main__":
    main()
