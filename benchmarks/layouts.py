"""dwc in both data formats against PyTorch's depthwise convolution in both memory formats.

usage: python benchmarks/layouts.py [THREADS] [ROUNDS]

For each MobileNetV2 depthwise layer (3x3, SAME), in one process, interleaved rounds (the order
reversed every other round, each block warmed up first) of whole calls:
- ``dwc NHWC`` / ``dwc NCHW``: ``dwc_compiler.depthwise_conv2d`` on plain NumPy arrays as NumPy
  allocates them (not realigned), TF filter;
- ``torch NCHW`` / ``torch channels_last``: ``torch.nn.functional.conv2d(groups=C)`` on
  contiguous NCHW and channels_last tensors (each in its own best configuration: PyTorch's
  default thread pool set to THREADS, oneDNN as it ships).
Times are medians over rounds; ratios are medians of the per-round ratios (paired, so that the
machine's drift between rounds cancels). Writes benchmarks/results/layouts-<stamp>.json and .md
with the machine it ran on.
"""

import statistics
from pathlib import Path

import numpy as np
import torch

import dwc_compiler as dwc
from dwc_compiler.benchmarking.interleaved import int_arguments, interleaved_rounds, median_ratio, write_results
from dwc_compiler.workloads import MOBILENET_V2

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_CALLS, TIMED_CALLS = 3, 10


def _calls(spec) -> dict:
    """The four implementations of one layer, each checked against the float64 reference."""
    rng = np.random.default_rng(0)
    batch, height, width, channels = spec.input_shape
    stride = spec.strides[0]
    nhwc = rng.random((batch, height, width, channels)).astype(np.float32)
    nchw = rng.random((batch, channels, height, width)).astype(np.float32)
    weights = rng.random(spec.filter_shape).astype(np.float32)
    # TF's SAME pads (top, bottom, left, right); PyTorch pads both sides alike, so an uneven
    # SAME pad (stride 2 on even sizes: 0 before, 1 after) is given to PyTorch as F.pad.
    top, bottom, left, right = spec.pads
    torch_input = torch.from_numpy(nchw)
    torch_weights = torch.from_numpy(np.ascontiguousarray(weights.transpose(2, 3, 0, 1)))
    channels_last = torch_input.contiguous(memory_format=torch.channels_last)

    def torch_call(tensor):
        if top == bottom and left == right:
            return torch.nn.functional.conv2d(tensor, torch_weights, stride=stride, padding=(top, left),
                                              groups=channels)
        padded = torch.nn.functional.pad(tensor, (left, right, top, bottom))
        return torch.nn.functional.conv2d(padded, torch_weights, stride=stride, groups=channels)

    calls = {
        "dwc NHWC": lambda: dwc.depthwise_conv2d(nhwc, weights, stride, "SAME"),
        "dwc NCHW": lambda: dwc.depthwise_conv2d(nchw, weights, stride, "SAME", "NCHW"),
        "torch NCHW": lambda: torch_call(torch_input),
        "torch channels_last": lambda: torch_call(channels_last),
    }
    nchw_spec = dwc.DepthwiseSpec.create(nchw.shape, spec.filter_shape, stride, "SAME", "NCHW")
    expected = {"dwc NHWC": spec.reference(nhwc, weights)}
    expected["dwc NCHW"] = expected["torch NCHW"] = expected["torch channels_last"] = nchw_spec.reference(nchw, weights)
    for name, call in calls.items():
        result = np.asarray(call())
        error = np.max(np.abs(result - expected[name])) / np.max(np.abs(expected[name]))
        if error > 1e-5:
            raise AssertionError(f"{name} differs from the reference on {spec.describe()}: {error:.2e}")
    return calls


def measure(name: str, spec, rounds: int) -> dict:
    calls = _calls(spec)
    samples = interleaved_rounds(calls, rounds, WARMUP_CALLS, TIMED_CALLS)

    def paired(a: str, b: str) -> float:
        return median_ratio(samples[a], samples[b])

    return {"layer": name, "median_us": {way: statistics.median(values) for way, values in samples.items()},
            "torch_nchw_over_dwc_nchw": paired("torch NCHW", "dwc NCHW"),
            "fastest_torch_over_dwc_nchw": min(paired("torch NCHW", "dwc NCHW"),
                                               paired("torch channels_last", "dwc NCHW")),
            "fastest_torch_over_dwc_nhwc": min(paired("torch NCHW", "dwc NHWC"),
                                               paired("torch channels_last", "dwc NHWC")),
            "dwc_nchw_over_dwc_nhwc": paired("dwc NCHW", "dwc NHWC"), "samples_us": samples}


def main() -> None:
    threads, rounds = int_arguments(1, 15)
    dwc.set_num_threads(threads)
    torch.set_num_threads(threads)
    rows = []
    for name, spec in MOBILENET_V2.items():
        row = measure(name, spec, rounds)
        rows.append(row)
        print(f"{name:20s} " + " ".join(f"{way} {us:7.1f}" for way, us in row["median_us"].items())
              + f"  torch NCHW / dwc NCHW {row['torch_nchw_over_dwc_nchw']:.2f}x", flush=True)
    method = (f"{threads} thread(s) for dwc and PyTorch {torch.__version__}; whole calls on plain NumPy arrays "
              f"(dwc) and contiguous tensors (PyTorch; an uneven SAME pad, stride 2 on even sizes, given to it as "
              f"F.pad); {rounds} interleaved rounds (order reversed every other round), each block {WARMUP_CALLS} "
              f"warm-up then {TIMED_CALLS} timed calls (block mean); times are medians over rounds, ratios medians "
              f"of per-round ratios")
    table = ["| layer | dwc NHWC (us) | dwc NCHW (us) | torch NCHW (us) | torch channels_last (us) | "
             "torch NCHW / dwc NCHW | fastest torch / dwc NCHW | fastest torch / dwc NHWC | dwc NCHW / dwc NHWC |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        us = row["median_us"]
        table.append(f"| {row['layer']} | {us['dwc NHWC']:.1f} | {us['dwc NCHW']:.1f} | {us['torch NCHW']:.1f} | "
                     f"{us['torch channels_last']:.1f} | {row['torch_nchw_over_dwc_nchw']:.2f} | "
                     f"{row['fastest_torch_over_dwc_nchw']:.2f} | {row['fastest_torch_over_dwc_nhwc']:.2f} | "
                     f"{row['dwc_nchw_over_dwc_nhwc']:.2f} |")
    geomean = statistics.geometric_mean
    table += ["", f"Geomean: torch NCHW / dwc NCHW {geomean([r['torch_nchw_over_dwc_nchw'] for r in rows]):.2f}x, "
                  f"fastest torch / dwc NCHW {geomean([r['fastest_torch_over_dwc_nchw'] for r in rows]):.2f}x, "
                  f"fastest torch / dwc NHWC {geomean([r['fastest_torch_over_dwc_nhwc'] for r in rows]):.2f}x, "
                  f"dwc NCHW / dwc NHWC {geomean([r['dwc_nchw_over_dwc_nhwc'] for r in rows]):.2f}x."]
    write_results(RESULTS, "layouts", f"dwc NHWC and NCHW against PyTorch's depthwise conv2d ({threads} thread(s))",
                  method, {"threads": threads, "rounds": rounds, "rows": rows}, table)
    print(table[-1])


if __name__ == "__main__":
    main()
