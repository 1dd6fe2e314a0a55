"""What the fused epilogue costs: depthwise + bias + ReLU6 in one kernel against the plain kernel.

usage: python benchmarks/epilogue_overhead.py [THREADS] [ROUNDS]

For each MobileNetV2 depthwise layer, in NHWC (the layer as the model has it) and NCHW, both
kernels are called the way users call them: whole ``dwc_compiler.depthwise_conv2d`` calls on
plain NumPy arrays as NumPy allocates them (not realigned). Rounds interleave the two (plain,
fused; fused, plain; ...), each block preceded by warm-up calls; the figure per kernel is the
median over rounds of each block's mean call time. Writes
benchmarks/results/epilogue-overhead-<stamp>.json and .md with the machine it ran on.
"""

import statistics
from pathlib import Path

import numpy as np

import dwc_compiler as dwc
from dwc_compiler.benchmarking.interleaved import int_arguments, interleaved_rounds, median_ratio, write_results
from dwc_compiler.workloads import MOBILENET_V2

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_CALLS, TIMED_CALLS = 3, 10
LIMIT = 1.05


def _nchw(shape):
    batch, height, width, channels = shape
    return (batch, channels, height, width)


def measure(name, spec, data_format, rounds: int) -> dict:
    """Interleaved rounds of the plain and the fused kernel on one layer."""
    rng = np.random.default_rng(0)
    shape = spec.input_shape if data_format == "NHWC" else _nchw(spec.input_shape)
    data = rng.random(shape).astype(np.float32)  # as NumPy allocates it: not realigned
    weights = rng.random(spec.filter_shape).astype(np.float32)
    bias = rng.random(spec.out_channels).astype(np.float32)
    strides = list(spec.strides)
    calls = {
        "plain": lambda: dwc.depthwise_conv2d(data, weights, strides, "SAME", data_format),
        "fused": lambda: dwc.depthwise_conv2d(data, weights, strides, "SAME", data_format, bias=bias,
                                              activation="relu6"),
    }
    plain_spec = dwc.DepthwiseSpec.create(shape, spec.filter_shape, strides, "SAME", data_format)
    reference = plain_spec.reference(data, weights) + bias.reshape((1, 1, 1, -1) if data_format == "NHWC"
                                                                   else (1, -1, 1, 1))
    error = float(np.max(np.abs(calls["fused"]() - np.clip(reference, 0, 6))) / np.max(np.abs(reference)))
    samples = interleaved_rounds(calls, rounds, WARMUP_CALLS, TIMED_CALLS)
    medians = {kind: statistics.median(values) for kind, values in samples.items()}
    paired = median_ratio(samples["fused"], samples["plain"])
    return {"layer": name, "data_format": data_format, "plain_us": medians["plain"], "fused_us": medians["fused"],
            "ratio": paired, "ratio_of_medians": medians["fused"] / medians["plain"], "max_relative_error": error,
            "input_address_mod_64": int(data.ctypes.data % 64), "samples_us": samples}


def main() -> None:
    threads, rounds = int_arguments(1, 41)
    dwc.set_num_threads(threads)
    rows = []
    for data_format in ("NHWC", "NCHW"):
        for name, spec in MOBILENET_V2.items():
            row = measure(name, spec, data_format, rounds)
            rows.append(row)
            print(f"{name:22s} {data_format} plain {row['plain_us']:8.1f} us  fused {row['fused_us']:8.1f} us  "
                  f"{row['ratio']:.3f}x", flush=True)
    method = (f"whole dwc_compiler.depthwise_conv2d calls on plain NumPy arrays (not realigned), {threads} "
              f"thread(s); {rounds} interleaved rounds (plain, fused, then fused, plain, ...), each block "
              f"{WARMUP_CALLS} warm-up calls then {TIMED_CALLS} timed calls (block mean); times are medians over "
              f"rounds, fused / plain the median of the per-round ratios")
    table = ["| layer | layout | plain (us) | fused (us) | fused / plain (paired) |", "|---|---|---:|---:|---:|"]
    for row in rows:
        flag = "" if row["ratio"] <= LIMIT else " (over 5%)"
        table.append(f"| {row['layer']} | {row['data_format']} | {row['plain_us']:.1f} | {row['fused_us']:.1f} | "
                     f"{row['ratio']:.3f}{flag} |")
    worst = max(rows, key=lambda row: row["ratio"])
    table += ["", f"Worst: {worst['layer']} {worst['data_format']} at {worst['ratio']:.3f}x; "
                  f"geomean {statistics.geometric_mean([row['ratio'] for row in rows]):.3f}x."]
    write_results(RESULTS, "epilogue-overhead", f"Fused bias + ReLU6 epilogue vs the plain kernel ({threads} thread(s))",
                  method, {"threads": threads, "rounds": rounds, "limit": LIMIT, "rows": rows}, table)
    print(table[-1])


if __name__ == "__main__":
    main()
