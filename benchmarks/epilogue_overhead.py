"""What the fused epilogue costs: depthwise + bias + ReLU6 in one kernel against the plain kernel.

usage: python benchmarks/epilogue_overhead.py [THREADS] [ROUNDS]

For each MobileNetV2 depthwise layer, in NHWC (the layer as the model has it) and NCHW, the
plain and the fused kernel on plain NumPy arrays as NumPy allocates them (not realigned), two ways:

- ``Kernel.call(..., out=)`` of the kernels the API runs (``depthwise_kernel``), both writing one
  output array, placed where the call would place it: what the epilogue itself costs. Where an output lies moves these layers by up to
  1.45x (``output_placement.py``), and each kernel keeps output buffers of its own, so calls that
  write their own outputs compare placements as well as kernels;
- whole ``dwc_compiler.depthwise_conv2d`` calls, each kernel writing its own outputs, as users
  call them.

Beside them, ``Kernel.call(..., out=)`` of the bias + ReLU kernel (one vector op fewer than
ReLU6 per output vector), and what the compiled code of each fused kernel adds to the plain
one's: the max, min, add, compare and blend instructions of ``main`` per FMA (a static count over
its code, within each kernel) beyond the plain kernel's. Where a kernel is bound by its FMAs and
the added instructions run on the same ports (on AVX-512 cores, max and min share ports 0 and 5
with the FMAs), 1 + that share is the time the fused kernel takes; a kernel bound by memory
takes nothing more.

Rounds interleave the five calls (reversed every other round), each block preceded by warm-up
calls; the figure per call is the median over rounds of each block's mean call time, the ratios
the medians of the per-round ratios. Writes benchmarks/results/epilogue-overhead-<stamp>.json
and .md with the machine it ran on.
"""

import re
import statistics
from collections import Counter
from pathlib import Path

import numpy as np

import dwc_compiler as dwc
from dwc_compiler.benchmarking.interleaved import int_arguments, interleaved_rounds, median_ratio, write_results
from dwc_compiler.workloads import MOBILENET_V2

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_CALLS, TIMED_CALLS = 3, 10
LIMIT = 1.05


# Mnemonics of the vector instructions an epilogue adds (max, min, an add, a compare and a
# blend), and of the FMAs.
EPILOGUE_OPS = re.compile(r"^v(maxp|minp|addp|cmp|blendm)")
FMAS = re.compile(r"^vfn?m(add|sub)")


def epilogue_ops_per_fma(kernel) -> float:
    """The epilogue's vector instructions per FMA in the assembly of `kernel`'s ``main`` (a static
    count over its code, taken within one kernel so that two kernels whose code differs in
    shape compare)."""
    mnemonics = Counter(line.split()[0] for line in kernel.inspect_source("asm").splitlines()
                        if line.startswith("\tv"))
    fmas = sum(count for mnemonic, count in mnemonics.items() if FMAS.match(mnemonic))
    return sum(count for mnemonic, count in mnemonics.items() if EPILOGUE_OPS.match(mnemonic)) / max(fmas, 1)


def _nchw(shape):
    batch, height, width, channels = shape
    return (batch, channels, height, width)


def measure(name, spec, data_format, rounds: int) -> dict:
    """Interleaved rounds of the plain and the fused kernel on one layer, both ways."""
    rng = np.random.default_rng(0)
    shape = spec.input_shape if data_format == "NHWC" else _nchw(spec.input_shape)
    data = rng.random(shape).astype(np.float32)  # as NumPy allocates it: not realigned
    weights = rng.random(spec.filter_shape).astype(np.float32)
    bias = rng.random(spec.out_channels).astype(np.float32)
    strides = list(spec.strides)
    fused = {"bias": bias, "activation": "relu6"}
    plain_kernel = dwc.depthwise_kernel(data, weights, strides, "SAME", data_format)
    fused_kernel = dwc.depthwise_kernel(data, weights, strides, "SAME", data_format, **fused)
    relu_kernel = dwc.depthwise_kernel(data, weights, strides, "SAME", data_format, bias=bias, activation="relu")
    # One output array for both kernels, where the call would place it: at the input's offset
    # for a kernel with a variant for that offset, else on a boundary.
    entries = plain_kernel.loaded.aligned_entries
    out = dwc.empty_aligned(plain_kernel.spec.output_shape, np.float32,
                            data.ctypes.data % entries.vector_bytes if entries is not None else 0)
    calls = {
        "plain": lambda: plain_kernel.call(data, weights, out=out),
        "fused": lambda: fused_kernel.call(data, weights, bias, out=out),
        "relu": lambda: relu_kernel.call(data, weights, bias, out=out),
        "api_plain": lambda: dwc.depthwise_conv2d(data, weights, strides, "SAME", data_format),
        "api_fused": lambda: dwc.depthwise_conv2d(data, weights, strides, "SAME", data_format, **fused),
    }
    reference = plain_kernel.spec.reference(data, weights) + bias.reshape((1, 1, 1, -1) if data_format == "NHWC"
                                                                         else (1, -1, 1, 1))
    scale = np.max(np.abs(reference))
    error = max(float(np.max(np.abs(calls["api_fused"]() - np.clip(reference, 0, 6))) / scale),
                float(np.max(np.abs(relu_kernel.call(data, weights, bias) - np.maximum(reference, 0))) / scale))
    plain_ops = epilogue_ops_per_fma(plain_kernel)  # the vector ops per FMA the fused kernels add beyond these
    samples = interleaved_rounds(calls, rounds, WARMUP_CALLS, TIMED_CALLS)
    medians = {kind: statistics.median(values) for kind, values in samples.items()}
    return {"layer": name, "data_format": data_format, "plain_us": medians["plain"], "fused_us": medians["fused"],
            "ratio": median_ratio(samples["fused"], samples["plain"]),
            "relu_ratio": median_ratio(samples["relu"], samples["plain"]),
            "added_per_fma": epilogue_ops_per_fma(fused_kernel) - plain_ops,
            "relu_added_per_fma": epilogue_ops_per_fma(relu_kernel) - plain_ops,
            "api_plain_us": medians["api_plain"], "api_fused_us": medians["api_fused"],
            "api_ratio": median_ratio(samples["api_fused"], samples["api_plain"]), "max_relative_error": error,
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
                  f"{row['ratio']:.3f}x  (API, own outputs: {row['api_ratio']:.3f}x; bias + ReLU "
                  f"{row['relu_ratio']:.3f}x; added per FMA {row['added_per_fma']:.3f})", flush=True)
    method = (f"{threads} thread(s), plain NumPy arrays (not realigned); fused / plain as Kernel.call(out=) of the "
              f"API's kernels writing one output array (the epilogue's cost), and as whole "
              f"dwc_compiler.depthwise_conv2d calls each writing its own outputs (placement too); {rounds} "
              f"interleaved rounds of the five calls (reversed every other round), each block {WARMUP_CALLS} warm-up "
              f"calls then {TIMED_CALLS} timed calls (block mean); times are medians over rounds, ratios the medians "
              f"of the per-round ratios")
    table = ["| layer | layout | plain (us) | fused (us) | fused / plain, one output | "
             "API: fused / plain, own outputs | bias + ReLU / plain | vector ops added per FMA (ReLU6 / ReLU) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        flag = "" if row["ratio"] <= LIMIT else " (over 5%)"
        api_flag = "" if row["api_ratio"] <= LIMIT else " (over 5%)"
        table.append(f"| {row['layer']} | {row['data_format']} | {row['plain_us']:.1f} | {row['fused_us']:.1f} | "
                     f"{row['ratio']:.3f}{flag} | {row['api_ratio']:.3f}{api_flag} | {row['relu_ratio']:.3f} | "
                     f"{row['added_per_fma']:.3f} / {row['relu_added_per_fma']:.3f} |")
    for key, what in (("ratio", "One output array"), ("api_ratio", "API calls, own outputs")):
        worst = max(rows, key=lambda row: row[key])
        over = sum(row[key] > LIMIT for row in rows)
        table += ["", f"{what}: worst {worst['layer']} {worst['data_format']} at {worst[key]:.3f}x; geomean "
                      f"{statistics.geometric_mean([row[key] for row in rows]):.3f}x; {over} of {len(rows)} over 5%."]
    write_results(RESULTS, "epilogue-overhead", f"Fused bias + ReLU6 epilogue vs the plain kernel ({threads} thread(s))",
                  method, {"threads": threads, "rounds": rounds, "limit": LIMIT, "rows": rows}, table)
    print("\n".join(table[-3:]))


if __name__ == "__main__":
    main()
