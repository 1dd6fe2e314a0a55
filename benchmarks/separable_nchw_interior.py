"""What the interior column blocks' plain loads gain for the fused separable NCHW kernels.

usage: python benchmarks/separable_nchw_interior.py [THREADS] [ROUNDS]

The x86 separable NCHW schedule reads its depthwise windows from the input under masks, as the
depthwise kernel does (``schedules/cpu_separable.py``); its column-block loop is now marked with
the blocks whose windows read no padding (``cpu.interior_column_blocks``), which dwc's TIR pass
gives a loop of their own with plain loads (``tir_passes._peeled_interior``). For each
MobileNetV2 separable block (depthwise -> bias -> ReLU6 -> 1x1 -> bias) in NCHW, the kernel as
dwc builds it (``peeled``) against the same schedule with every window load masked (``masked``),
``Kernel.call`` on plain NumPy arrays, in one process, interleaved rounds (reversed every other
round, each block warmed up first); both checked against the float64 reference first. Writes
benchmarks/results/separable-nchw-interior-<stamp>.json and .md with the machine it ran on.
"""

import statistics
from pathlib import Path
from unittest import mock

import numpy as np

import dwc_compiler as dwc
from dwc_compiler import tir_passes
from dwc_compiler.benchmarking.interleaved import int_arguments, interleaved_rounds, median_ratio, write_results
from dwc_compiler.benchmarking.nchw_kernels import built_now_and_before
from dwc_compiler.ops.compare import max_relative_error
from dwc_compiler.workloads import MOBILENET_V2_BLOCKS

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_CALLS, TIMED_CALLS = 3, 10
MAX_RELATIVE_ERROR = 1e-5


def _nchw_block(spec):
    """The NCHW form of the NHWC separable block `spec`, with MobileNetV2's bias, ReLU6 and bias."""
    depthwise = spec.depthwise
    batch, height, width, channels = depthwise.input_shape
    return dwc.SeparableSpec.create((batch, channels, height, width), depthwise.filter_shape,
                                    (1, 1, spec.depthwise_channels, spec.out_channels), depthwise.strides, "SAME",
                                    "NCHW", with_depthwise_bias=True, depthwise_activation="relu6",
                                    with_pointwise_bias=True)


ALL_MASKED = built_now_and_before(lambda: mock.patch.object(tir_passes, "_peeled_interior",
                                                            lambda loop, bindings: loop))


def _kernels(spec) -> dict:
    """The peeled and the all-masked kernel of `spec`."""
    return {"peeled": ALL_MASKED(spec, True), "masked": ALL_MASKED(spec, False)}


def main() -> None:
    threads, rounds = int_arguments(1, 21)
    dwc.set_num_threads(threads)
    rows = []
    for name, nhwc in MOBILENET_V2_BLOCKS.items():
        spec = _nchw_block(nhwc)
        rng = np.random.default_rng(0)
        arguments = [rng.standard_normal(argument.shape).astype(argument.dtype) for argument in spec.arguments[:-1]]
        expected = spec.reference(*arguments)
        kernels = _kernels(spec)
        for way, kernel in kernels.items():
            error = max_relative_error(kernel(*arguments), expected)
            if error > MAX_RELATIVE_ERROR:
                raise SystemExit(f"{name} {way}: max relative error {error:.2e}")
        samples = interleaved_rounds({way: (lambda kernel=kernel: kernel.call(*arguments))
                                      for way, kernel in kernels.items()}, rounds, WARMUP_CALLS, TIMED_CALLS)
        row = {"block": name, "median_us": {way: statistics.median(values) for way, values in samples.items()},
               "ratio": median_ratio(samples["peeled"], samples["masked"]), "samples_us": samples}
        rows.append(row)
        print(f"{name:24s} peeled {row['median_us']['peeled']:8.1f}  masked {row['median_us']['masked']:8.1f} us  "
              f"peeled / masked {row['ratio']:.3f}x", flush=True)
    geomean = float(np.exp(np.mean(np.log([row["ratio"] for row in rows]))))
    method = (f"NCHW separable blocks (bias + ReLU6, bias), Kernel.call on plain NumPy arrays, {threads} thread(s); "
              f"{rounds} interleaved rounds (reversed every other round), each block {WARMUP_CALLS} warm-up calls "
              f"then {TIMED_CALLS} timed calls (block mean); times are medians over rounds, ratios the medians of "
              f"the per-round ratios")
    table = ["| block | peeled (us) | masked (us) | peeled / masked |", "|---|---:|---:|---:|",
             *(f"| {row['block']} | {row['median_us']['peeled']:.1f} | {row['median_us']['masked']:.1f} | "
               f"{row['ratio']:.3f} |" for row in rows), "", f"Geomean peeled / masked: {geomean:.3f}x."]
    print(table[-1])
    write_results(RESULTS, "separable-nchw-interior", "Separable NCHW kernels: interior column blocks peeled vs "
                  "every window load masked", method, {"threads": threads, "rounds": rounds, "rows": rows}, table)


if __name__ == "__main__":
    main()
