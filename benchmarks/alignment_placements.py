"""What an input's alignment costs, averaged over where the input lies.

usage: python benchmarks/alignment_placements.py [THREADS] [ROUNDS]

Where a kernel's output lies relative to its input moves the small MobileNetV2 layers by up to
1.45x (``output_placement.py``), so one plain array against one aligned copy compares two
placements as well as two alignments. Here each NHWC layer's kernel (the one the API runs,
writing its own output buffers, as ``Kernel.call`` does) is called on inputs at 8 places in a
4 KB page (multiples of 512 bytes) for each offset past a 64-byte boundary NumPy gives (0, 16,
32, 48), all in every round (interleaved, reversed every other round, each block warmed up
first). Per offset, the mean over the 8 places of each round's block times; the table gives,
per offset past a boundary, the median over rounds of that mean over the aligned inputs'. For a
layer whose kernel has variants for such inputs, the same kernel built without them runs in the
same rounds on the same inputs (``main``, with an aligned output, for every input): what the
variants gain. Writes benchmarks/results/alignment-placements-<stamp>.json and .md with the
machine it ran on.
"""

import importlib
import statistics
from pathlib import Path

import numpy as np

import dwc_compiler as dwc
from dwc_compiler.benchmarking.interleaved import int_arguments, interleaved_rounds, write_results
from dwc_compiler.schedules.base import AlignedVariants
from dwc_compiler.workloads import MOBILENET_V2

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_CALLS, TIMED_CALLS = 3, 10
PLACES = tuple(range(0, 4096, 512))  # bytes past a page boundary
OFFSETS = (0, 16, 32, 48)  # bytes past a 64-byte boundary: NumPy's arrays lie at one of these
LIMIT = 1.05
MAX_RELATIVE_ERROR = 1e-5
BUILD = importlib.import_module("dwc_compiler.build")  # the module (the package's `build` is its function)


def _input_at(shape, byte_offset: int, seed: int) -> np.ndarray:
    """A float32 array of `shape` starting `byte_offset` bytes past a page boundary."""
    count = int(np.prod(shape))
    raw = np.empty(count + 2 * 4096 // 4, np.float32)
    start = ((-raw.ctypes.data) % 4096 + byte_offset) // 4
    array = raw[start:start + count].reshape(shape)
    array[...] = np.random.default_rng(seed).random(shape)
    return array


def _without_variants(spec):
    """The kernel of `spec` as the API builds it, less its functions for inputs off a vector boundary."""
    made = BUILD.aligned_variants
    BUILD.aligned_variants = lambda *arguments: AlignedVariants({})
    try:
        return dwc.build(spec, "host")
    finally:
        BUILD.aligned_variants = made


def _mean_over_places(samples, kind: str, offset: int, rounds: int) -> list[float]:
    return [statistics.mean(samples[(kind, place, offset)][round_index] for place in PLACES)
            for round_index in range(rounds)]


def measure(name, spec, rounds: int) -> dict:
    """Interleaved rounds of one layer's kernel (and, where it has variants, of the same kernel
    without them) on inputs at every place and offset."""
    weights = np.random.default_rng(1).random(spec.filter_shape).astype(np.float32)
    inputs = {(place, offset): _input_at(spec.input_shape, place + offset, seed=place + offset)
              for offset in OFFSETS for place in PLACES}
    kernels = {"kernel": dwc.depthwise_kernel(inputs[(0, 0)], weights, list(spec.strides), "SAME")}
    if kernels["kernel"].loaded.aligned_entries is not None:
        kernels["without variants"] = _without_variants(kernels["kernel"].spec)
    errors = []
    for kernel in kernels.values():
        for data in (inputs[(0, offset)] for offset in OFFSETS):
            expected = kernel.spec.reference(data, weights)
            errors.append(float(np.max(np.abs(kernel(data, weights) - expected)) / np.max(np.abs(expected))))
    assert max(errors) <= MAX_RELATIVE_ERROR, f"{name}: max relative error {max(errors):.3g}"
    calls = {(kind, *key): (lambda kernel=kernel, data=data: kernel.call(data, weights))
             for kind, kernel in kernels.items() for key, data in inputs.items()}
    samples = interleaved_rounds(calls, rounds, WARMUP_CALLS, TIMED_CALLS)
    means = {(kind, offset): _mean_over_places(samples, kind, offset, rounds) for kind in kernels for offset in OFFSETS}
    aligned = means[("kernel", 0)]
    ratios = {(kind, offset): statistics.median(a / b for a, b in zip(means[(kind, offset)], aligned))
              for kind in kernels for offset in OFFSETS[1:]}
    place_medians = [statistics.median(samples[("kernel", place, 0)]) for place in PLACES]
    kernel = kernels["kernel"]
    return {"layer": name, "schedule": kernel.schedule, "has_variants": kernel.loaded.aligned_entries is not None,
            "aligned_us": statistics.median(aligned),
            "over_aligned": {offset: ratios[("kernel", offset)] for offset in OFFSETS[1:]},
            "without_variants_over_aligned": ({offset: ratios[("without variants", offset)] for offset in OFFSETS[1:]}
                                              if "without variants" in kernels else None),
            "slowest_over_fastest_place": max(place_medians) / min(place_medians), "max_relative_error": max(errors),
            "samples_us": {" ".join(map(str, key)): values for key, values in samples.items()}}


def main() -> None:
    threads, rounds = int_arguments(1, 11)
    dwc.set_num_threads(threads)
    rows = []
    for name, spec in MOBILENET_V2.items():
        row = measure(name, spec, rounds)
        rows.append(row)
        without = row["without_variants_over_aligned"]
        print(f"{name:20s} aligned {row['aligned_us']:7.1f} us  " + "  ".join(
            f"+{offset}: {row['over_aligned'][offset]:.3f}x" + (f" ({without[offset]:.3f}x without variants)"
                                                                if without else "") for offset in OFFSETS[1:])
            + f"  (places: slowest / fastest {row['slowest_over_fastest_place']:.2f}x)", flush=True)
    method = (f"{threads} thread(s); the API's kernel (Kernel.call, its own output buffers) on inputs at "
              f"{len(PLACES)} places in a page (multiples of 512 bytes) for each offset past a 64-byte boundary "
              f"({', '.join(map(str, OFFSETS))} bytes), and where it has variants for such inputs the same kernel "
              f"without them, all in every one of {rounds} interleaved rounds (reversed every other round), each "
              f"block {WARMUP_CALLS} warm-up calls then {TIMED_CALLS} timed calls (block mean); per offset the mean "
              f"over the places of each round's blocks; the ratio the median over rounds of that mean over the "
              f"kernel's on the aligned inputs")

    def cell(ratio: float) -> str:
        return f"{ratio:.3f}{'' if ratio <= LIMIT else ' (over 5%)'}"

    table = ["| layer | schedule | variants | aligned (us, mean over places) | +16 B / aligned | +32 B / aligned | "
             "+48 B / aligned | without the variants: +16 / +32 / +48 B | slowest / fastest place, aligned |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        variants = "yes" if row["has_variants"] else "no"
        without = row["without_variants_over_aligned"]
        table.append(f"| {row['layer']} | {row['schedule']} | {variants} | {row['aligned_us']:.1f} | "
                     + " | ".join(cell(row["over_aligned"][offset]) for offset in OFFSETS[1:]) + " | "
                     + (" / ".join(f"{without[offset]:.3f}" for offset in OFFSETS[1:]) if without else "-")
                     + f" | {row['slowest_over_fastest_place']:.2f} |")
    ratios = [row["over_aligned"][offset] for row in rows for offset in OFFSETS[1:]]
    table += ["", f"Off a 64-byte boundary / on one: geomean {statistics.geometric_mean(ratios):.3f}x, worst "
                  f"{max(ratios):.3f}x; {sum(ratio > LIMIT for ratio in ratios)} of {len(ratios)} over 5%."]
    write_results(RESULTS, "alignment-placements", f"Input alignment, averaged over placements ({threads} thread(s))",
                  method, {"threads": threads, "rounds": rounds, "places": PLACES, "offsets": OFFSETS, "rows": rows},
                  table)
    print(table[-1])


if __name__ == "__main__":
    main()
