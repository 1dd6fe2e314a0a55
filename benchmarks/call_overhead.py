"""What dwc's Python costs per call: the API and Kernel against the compiled function itself.

usage: python benchmarks/call_overhead.py [ROUNDS]

For a cached spec, a call of ``dwc_compiler.depthwise_conv2d`` does Python work around the
compiled function: finding the kernel, checking the arrays, handing out an output. This times,
on the same arrays, in interleaved rounds (each block warmed up first):
- ``compiled``: the compiled function alone, ``main(input, filter, out)`` (TVM's FFI takes the
  arrays through DLPack; that conversion counts as the function's, since every caller pays it);
- ``kernel``: ``Kernel.call`` (the plain-function form of calling a Kernel: checks, output buffer);
- ``api``: the whole ``depthwise_conv2d`` call (kernel cache lookup too);
for NumPy arrays (as NumPy allocates them) and PyTorch CPU tensors (DLPack), on a tiny layer
(where the kernel takes well under a microsecond, so the difference is Python's) and on
mbv2-7x7x960-s1. The overhead is the median over rounds of the per-round difference
(api - compiled), so the machine's drift between rounds cancels. Writes
benchmarks/results/call-overhead-<stamp>.json and .md with the machine it ran on.
"""

import datetime
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import dwc_compiler as dwc
from dwc_compiler.benchmarking.harness import machine_info
from dwc_compiler.files import write_json_atomic
from dwc_compiler.runtime.arrays import empty_aligned

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_CALLS, TIMED_CALLS = 200, 2000
LAYERS = {  # name: (input shape NHWC, filter shape, strides)
    "tiny-1x4x4x8-s1": ((1, 4, 4, 8), (3, 3, 8, 1), 1),
    "mbv2-7x7x960-s1": ((1, 7, 7, 960), (3, 3, 960, 1), 1),
}


def _block_us(call) -> float:
    for _ in range(WARMUP_CALLS):
        call()
    start = time.perf_counter()
    for _ in range(TIMED_CALLS):
        call()
    return (time.perf_counter() - start) / TIMED_CALLS * 1e6


def _calls(shape, filter_shape, strides, to_tensor):
    """The three ways to call the same kernel on the same arrays."""
    rng = np.random.default_rng(0)
    data = to_tensor(rng.random(shape).astype(np.float32))
    weights = to_tensor(rng.random(filter_shape).astype(np.float32))
    dwc.depthwise_conv2d(data, weights, strides, "SAME")  # compiles and caches the kernel
    spec = dwc.DepthwiseSpec.create(shape, filter_shape, strides, "SAME")
    kernel = dwc.build(spec, "host")
    compiled = kernel.loaded.module["main"]
    out = empty_aligned(spec.output_shape, np.float32)
    return {
        "compiled": lambda: compiled(data, weights, out),
        "kernel": lambda: kernel.call(data, weights),
        "api": lambda: dwc.depthwise_conv2d(data, weights, strides, "SAME"),
    }


def measure(name: str, kind: str, calls: dict, rounds: int) -> dict:
    """Interleaved rounds of the three calls; medians and paired differences against `compiled`."""
    samples = {way: [] for way in calls}
    for round_index in range(rounds):
        order = list(calls) if round_index % 2 == 0 else list(reversed(calls))
        for way in order:
            samples[way].append(_block_us(calls[way]))
    medians = {way: statistics.median(values) for way, values in samples.items()}
    overhead = {way: statistics.median(a - b for a, b in zip(samples[way], samples["compiled"]))
                for way in ("kernel", "api")}
    return {"layer": name, "arrays": kind, "median_us": medians, "overhead_us": overhead, "samples_us": samples}


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    dwc.set_num_threads(1)
    kinds = {"numpy": lambda array: array}
    try:
        import torch

        kinds["torch"] = torch.from_numpy
    except ImportError:
        print("PyTorch is not installed: DLPack tensors are not measured")
    rows = []
    for name, (shape, filter_shape, strides) in LAYERS.items():
        for kind, to_tensor in kinds.items():
            row = measure(name, kind, _calls(shape, filter_shape, strides, to_tensor), rounds)
            rows.append(row)
            print(f"{name:18s} {kind:6s} compiled {row['median_us']['compiled']:7.2f} us  "
                  f"kernel +{row['overhead_us']['kernel']:.2f}  api +{row['overhead_us']['api']:.2f} us", flush=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M")
    machine = machine_info()
    method = (f"1 thread; {rounds} interleaved rounds (compiled, kernel, api, then reversed), each block "
              f"{WARMUP_CALLS} warm-up calls then {TIMED_CALLS} timed calls (block mean); overhead = median "
              f"over rounds of (call - compiled) within the round")
    write_json_atomic(RESULTS / f"call-overhead-{stamp}.json",
                      {"machine": machine, "rounds": rounds, "method": method, "rows": rows, "created": stamp})
    lines = ["# Python per call over the compiled function (cached spec)", "",
             f"Machine: {machine['cpu']} (LLVM `{machine['llvm_cpu']}`), {machine['usable_cores']} cores, "
             f"dwc {machine['dwc']}, TVM {machine['tvm']}.", "", f"Method: {method}.", "",
             "| layer | arrays | compiled (us) | Kernel call overhead (us) | API call overhead (us) |",
             "|---|---|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['layer']} | {row['arrays']} | {row['median_us']['compiled']:.2f} | "
                     f"{row['overhead_us']['kernel']:.2f} | {row['overhead_us']['api']:.2f} |")
    (RESULTS / f"call-overhead-{stamp}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
