"""What an input's alignment costs: NumPy's arrays against 64-byte-aligned copies.

usage: python benchmarks/alignment.py [THREADS] [ROUNDS]

For each MobileNetV2 depthwise layer (NHWC, plain and with the fused bias + ReLU6), in one
process, interleaved rounds time whole ``dwc_compiler.depthwise_conv2d`` calls on the input as
NumPy allocates it (``rng.random(shape).astype(np.float32)``: 16, 32 or 48 bytes past a 64-byte
boundary, or on one; the table says which) and on a copy on a 64-byte boundary. Beside them,
in the same rounds, the compiled functions alone: the kernel's ``main`` on the plain input
(what every call ran before the kernels for inputs off a vector boundary existed) and on the
aligned one, and the variant for the plain input's offset, where the layer has one. Writes
benchmarks/results/alignment-<stamp>.json and .md with the machine it ran on.
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


def measure(name: str, spec, epilogue: str, rounds: int) -> dict:
    """Interleaved rounds of one layer's calls on the plain and the aligned input."""
    rng = np.random.default_rng(0)
    plain = rng.random(spec.input_shape).astype(np.float32)  # as NumPy allocates it
    aligned = dwc.empty_aligned(plain.shape, plain.dtype)
    aligned[...] = plain
    weights = rng.random(spec.filter_shape).astype(np.float32)
    fused = {"bias": rng.random(spec.out_channels).astype(np.float32), "activation": "relu6"} if epilogue else {}
    strides = list(spec.strides)
    kernel = dwc.depthwise_kernel(plain, weights, strides, "SAME", "NHWC", **fused)
    bias = [fused["bias"]] if fused else []
    address = plain.ctypes.data
    entries = kernel.loaded.aligned_entries
    variant = kernel.aligned_function(address % entries.vector_bytes) if entries is not None else None
    main_out = dwc.empty_aligned(kernel.spec.output_shape, np.float32)
    variant_out = dwc.empty_aligned(kernel.spec.output_shape, np.float32, address % 64)
    expected = kernel.spec.reference(plain, weights, *bias)
    error = float(np.max(np.abs(dwc.depthwise_conv2d(plain, weights, strides, "SAME", "NHWC", **fused) - expected))
                  / np.max(np.abs(expected)))
    calls = {
        "api_plain": lambda: dwc.depthwise_conv2d(plain, weights, strides, "SAME", "NHWC", **fused),
        "api_aligned": lambda: dwc.depthwise_conv2d(aligned, weights, strides, "SAME", "NHWC", **fused),
        "main_plain": lambda: kernel.loaded.invoke(plain, weights, *bias, main_out),
        "main_aligned": lambda: kernel.loaded.invoke(aligned, weights, *bias, main_out),
    }
    if variant is not None:
        calls["variant_plain"] = lambda: variant(plain, weights, *bias, variant_out)
    samples = interleaved_rounds(calls, rounds, WARMUP_CALLS, TIMED_CALLS)
    row = {"layer": name, "epilogue": epilogue or "none", "input_address_mod_64": address % 64,
           "kernel_has_variants": entries is not None, "has_variant": variant is not None,
           "schedule": kernel.schedule, "max_relative_error": error,
           **{f"{call}_us": statistics.median(values) for call, values in samples.items()},
           "api_plain_over_aligned": median_ratio(samples["api_plain"], samples["api_aligned"]),
           "main_plain_over_aligned": median_ratio(samples["main_plain"], samples["main_aligned"]),
           "samples_us": samples}
    if variant is not None:
        row["variant_over_main_plain"] = median_ratio(samples["variant_plain"], samples["main_plain"])
    return row


def main() -> None:
    threads, rounds = int_arguments(1, 21)
    dwc.set_num_threads(threads)
    rows = []
    for epilogue in ("", "bias+relu6"):
        for name, spec in MOBILENET_V2.items():
            row = measure(name, spec, epilogue, rounds)
            rows.append(row)
            print(f"{name:22s} {row['epilogue']:10s} plain {row['api_plain_us']:7.1f} us  aligned "
                  f"{row['api_aligned_us']:7.1f} us  {row['api_plain_over_aligned']:.3f}x  (main alone "
                  f"{row['main_plain_over_aligned']:.3f}x)", flush=True)
    method = (f"whole dwc_compiler.depthwise_conv2d calls, NHWC float32, {threads} thread(s), on the input as "
              f"NumPy allocates it and on a 64-byte-aligned copy, and the compiled functions alone on them "
              f"(main: the kernel's function for aligned inputs; variant: its function for the plain input's "
              f"offset); {rounds} interleaved rounds (order reversed every other round), each block "
              f"{WARMUP_CALLS} warm-up calls then {TIMED_CALLS} timed calls (block mean); times are medians "
              f"over rounds, ratios the medians of the per-round ratios")
    table = ["| layer | epilogue | kernel has variants | plain input at (bytes past 64) | API plain (us) | "
             "API aligned (us) | plain / aligned | main alone: plain / aligned | variant / main, plain input |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        flag = "" if row["api_plain_over_aligned"] <= LIMIT else " (over 5%)"
        variant = f"{row['variant_over_main_plain']:.3f}" if row["has_variant"] else "-"
        table.append(f"| {row['layer']} | {row['epilogue']} | {'yes' if row['kernel_has_variants'] else 'no'} | "
                     f"{row['input_address_mod_64']} | "
                     f"{row['api_plain_us']:.1f} | {row['api_aligned_us']:.1f} | "
                     f"{row['api_plain_over_aligned']:.3f}{flag} | {row['main_plain_over_aligned']:.3f} | {variant} |")
    ratios = [row["api_plain_over_aligned"] for row in rows]
    mains = [row["main_plain_over_aligned"] for row in rows]
    table += ["", f"API on plain / aligned input: geomean {statistics.geometric_mean(ratios):.3f}x, "
                  f"worst {max(ratios):.3f}x; {sum(ratio > LIMIT for ratio in ratios)} of {len(ratios)} over 5%. "
                  f"The main function alone on the same inputs: geomean {statistics.geometric_mean(mains):.3f}x, "
                  f"worst {max(mains):.3f}x."]
    write_results(RESULTS, "alignment", f"Plain NumPy inputs vs 64-byte-aligned copies ({threads} thread(s))",
                  method, {"threads": threads, "rounds": rounds, "limit": LIMIT, "rows": rows}, table)
    print(table[-1])


if __name__ == "__main__":
    main()
