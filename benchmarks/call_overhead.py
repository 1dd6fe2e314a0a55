"""What dwc's Python costs per call: the API and Kernel against the compiled function itself.

usage: python benchmarks/call_overhead.py [ROUNDS]

For a cached spec, a call of ``dwc_compiler.depthwise_conv2d`` does Python work around the
compiled function: finding the kernel, checking the arrays, handing out an output. This times,
on the same arrays, in interleaved rounds (each block warmed up first):
- ``compiled``: the compiled function the call runs, alone (``main(input, filter, out)``, or the
  kernel's variant for an input off a vector boundary where the layer has one; TVM's FFI takes
  the arrays through DLPack, and that conversion counts as the function's, since every caller
  pays it), writing into the kernel's own first output buffer: where an output lies moves a
  layer such as 7x7x960 by up to 1.2x (outputs at 32 places in a 4 KB page), so each way below
  but the last writes the same memory, and their differences are Python's alone;
- ``kernel``: ``Kernel.call`` (the plain-function form of calling a Kernel: checks, output buffer);
- ``api``: the whole ``depthwise_conv2d`` call (kernel cache lookup too), its result dropped;
- ``api-by-shapes``: the same call with the lookup by the filter object switched off (its
  entries emptied and none kept, for the block), so that the lookup by the arrays' shapes and
  the parameters finds the kernel, as every call did before that lookup existed (the empty
  lookup and the switched-off keep cost it ~0.1 us more than that path had);
- ``api-kept``: the same call as the usual loop ``y = depthwise_conv2d(...)`` makes it: the last
  result is still held while the next call runs (the kernel keeps two output buffers, so that
  they alternate instead of a new output's fresh pages on every call; on 7x7x960 its
  difference holds the second buffer's placement as well);
for NumPy arrays (as NumPy allocates them) and PyTorch CPU tensors (DLPack), on a tiny layer
(where the kernel takes well under a microsecond, so the difference is Python's) and on
mbv2-7x7x960-s1. The overhead is the median over rounds of the per-round difference
(api - compiled), so the machine's drift between rounds cancels; beside it, the difference of
the fastest blocks (as ``timeit`` reads a time: this machine's slow phases slow Python too, and
the medians then show up to twice the fast phase's overhead). Writes
benchmarks/results/call-overhead-<stamp>.json and .md with the machine it ran on.
"""

import contextlib
import statistics
from pathlib import Path
from unittest import mock

import numpy as np

import dwc_compiler as dwc
from dwc_compiler import api
from dwc_compiler.benchmarking.interleaved import int_arguments, interleaved_rounds, median_difference, write_results

RESULTS = Path(__file__).resolve().parent / "results"
# An even number of calls a block: `api-kept` then ends holding the kernel's second buffer, so
# the calls after it, whose results are dropped, take the first one again, as `compiled` writes.
WARMUP_CALLS, TIMED_CALLS = 200, 2000
WAYS = ("kernel", "api", "api-kept", "api-by-shapes")  # each timed against "compiled"
LAYERS = {  # name: (input shape NHWC, filter shape, strides)
    "tiny-1x4x4x8-s1": ((1, 4, 4, 8), (3, 3, 8, 1), 1),
    "mbv2-7x7x960-s1": ((1, 7, 7, 960), (3, 3, 960, 1), 1),
}


def _calls(shape, filter_shape, strides, to_tensor):
    """The four ways to call the same kernel on the same arrays."""
    rng = np.random.default_rng(0)
    data = to_tensor(rng.random(shape).astype(np.float32))
    weights = to_tensor(rng.random(filter_shape).astype(np.float32))
    kernel = dwc.depthwise_kernel(data, weights, strides, "SAME")  # compiled and cached: the API's own
    # The function the call runs: for an input off a vector boundary, the kernel's variant for
    # its offset where it has one (writing an output at the same offset, as the call does).
    address = data.ctypes.data if isinstance(data, np.ndarray) else data.data_ptr()
    entries = kernel.loaded.aligned_entries
    offset = address % entries.vector_bytes if entries is not None else 0
    compiled = kernel.aligned_function(offset)
    if compiled is None:
        offset, compiled = 0, kernel.loaded.module["main"]
    # The kernel's first output buffer at that offset, which the calls whose results are dropped
    # take again each time: only its TVM tensor is held here (not the array), so it stays free.
    out = kernel._outputs.take(offset)[1]  # noqa: SLF001 (the benchmark's baseline, not an API)
    kept = {}

    def api_kept():
        kept["y"] = dwc.depthwise_conv2d(data, weights, strides, "SAME")

    return {
        "compiled": lambda: compiled(data, weights, out),
        "kernel": lambda: kernel.call(data, weights),
        "api": lambda: dwc.depthwise_conv2d(data, weights, strides, "SAME"),
        "api-kept": api_kept,
        "api-by-shapes": lambda: dwc.depthwise_conv2d(data, weights, strides, "SAME"),
    }


def _by_shapes() -> contextlib.ExitStack:
    """For a block: the API's lookup by the filter object emptied and keeping nothing."""
    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.dict(api._calls_by_filter.entries, clear=True))  # noqa: SLF001
    stack.enter_context(mock.patch.object(api._calls_by_filter, "keep", lambda *arguments: None))  # noqa: SLF001
    return stack


def measure(name: str, kind: str, calls: dict, rounds: int) -> dict:
    """Interleaved rounds of the four calls; medians, paired differences against `compiled`, and the
    fastest blocks' difference."""
    samples = interleaved_rounds(calls, rounds, WARMUP_CALLS, TIMED_CALLS, {"api-by-shapes": _by_shapes})
    medians = {way: statistics.median(values) for way, values in samples.items()}
    overhead = {way: median_difference(samples[way], samples["compiled"]) for way in WAYS}
    fastest = {way: min(samples[way]) - min(samples["compiled"]) for way in WAYS}
    return {"layer": name, "arrays": kind, "median_us": medians, "overhead_us": overhead,
            "fastest_overhead_us": fastest, "samples_us": samples}


def main() -> None:
    (rounds,) = int_arguments(21)
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
            overhead, fastest = row["overhead_us"], row["fastest_overhead_us"]
            print(f"{name:18s} {kind:6s} compiled {row['median_us']['compiled']:7.2f} us  "
                  + "  ".join(f"{way} +{overhead[way]:.2f}" for way in WAYS) + " us (fastest blocks: "
                  + " ".join(f"{way} +{fastest[way]:.2f}" for way in WAYS) + ")", flush=True)
    method = (f"1 thread; {rounds} interleaved rounds (compiled, {', '.join(WAYS)}, then reversed), each block "
              f"{WARMUP_CALLS} warm-up calls then {TIMED_CALLS} timed calls (block mean); overhead = median "
              f"over rounds of (call - compiled) within the round")
    table = ["| layer | arrays | compiled (us) | Kernel call overhead (us) | API call overhead (us) | "
             "API call, last result kept (us) | API call by shapes (us) | "
             "fastest blocks: Kernel / API / kept / by shapes (us) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        overhead, fastest = row["overhead_us"], row["fastest_overhead_us"]
        table.append(f"| {row['layer']} | {row['arrays']} | {row['median_us']['compiled']:.2f} | "
                     + " | ".join(f"{overhead[way]:.2f}" for way in WAYS) + " | "
                     + " / ".join(f"{fastest[way]:.2f}" for way in WAYS) + " |")
    write_results(RESULTS, "call-overhead", "Python per call over the compiled function (cached spec)", method,
                  {"rounds": rounds, "rows": rows}, table)


if __name__ == "__main__":
    main()
