"""Where the output lies: one kernel, one input, the output at 32 places within a 4 KB page.

usage: python benchmarks/output_placement.py [THREADS] [ROUNDS]

For each MobileNetV2 depthwise layer (NHWC, built as ``dwc.build`` builds it), the input on a
page boundary and the output at each multiple of 128 bytes past one (its own page otherwise
arbitrary), whole ``Kernel.call(..., out=)`` calls, interleaved rounds (each block warmed up
first). Nothing but the output's address changes between the calls. The table gives each
placement's median over the fastest one's: what this machine makes of an address, and so how
far apart two otherwise equal measurements can land (each kernel's own output buffers, and
NumPy's arrays, lie where the allocator puts them). Writes
benchmarks/results/output-placement-<stamp>.json and .md with the machine it ran on.
"""

import statistics
from pathlib import Path

import numpy as np

import dwc_compiler as dwc
from dwc_compiler.benchmarking.interleaved import int_arguments, interleaved_rounds, write_results
from dwc_compiler.workloads import MOBILENET_V2

RESULTS = Path(__file__).resolve().parent / "results"
PAGE, STEP = 4096, 128
WARMUP_CALLS = 3


def at_page_offset(shape, offset: int) -> np.ndarray:
    """An uninitialized float32 array of `shape` whose data starts `offset` bytes past a page boundary."""
    size = int(np.prod(shape)) * 4
    backing = np.empty(size + 2 * PAGE, np.uint8)
    start = (offset - backing.ctypes.data) % PAGE
    return backing[start:start + size].view(np.float32).reshape(shape)


def measure(name: str, spec, rounds: int) -> dict:
    """One layer's calls with the output at each placement."""
    kernel = dwc.build(spec, "host")
    rng = np.random.default_rng(0)
    data = at_page_offset(spec.input_shape, 0)
    data[...] = rng.random(spec.input_shape)
    weights = rng.random(spec.filter_shape).astype(np.float32)
    offsets = list(range(0, PAGE, STEP))
    outputs = {offset: at_page_offset(spec.output_shape, offset) for offset in offsets}
    calls = {offset: (lambda out=outputs[offset]: kernel.call(data, weights, out=out)) for offset in offsets}
    timed = 10 if spec.flops > 5e6 else 20
    samples = interleaved_rounds(calls, rounds, WARMUP_CALLS, timed)
    medians = {offset: statistics.median(values) for offset, values in samples.items()}
    fastest = min(medians.values())
    return {"layer": name, "schedule": kernel.schedule, "fastest_us": fastest,
            "relative": {str(offset): medians[offset] / fastest for offset in offsets},
            "samples_us": {str(offset): values for offset, values in samples.items()}}


def main() -> None:
    threads, rounds = int_arguments(1, 9)
    dwc.set_num_threads(threads)
    rows = []
    for name, spec in MOBILENET_V2.items():
        row = measure(name, spec, rounds)
        rows.append(row)
        spread = max(row["relative"].values())
        print(f"{name:22s} fastest {row['fastest_us']:7.1f} us, slowest placement {spread:.2f}x", flush=True)
    method = (f"{threads} thread(s); input on a page boundary, output at each multiple of {STEP} bytes past one; "
              f"whole Kernel.call(out=) calls, {rounds} interleaved rounds (reversed every other round), each block "
              f"{WARMUP_CALLS} warm-up calls then 10-20 timed calls (block mean); medians over rounds, each over "
              f"the fastest placement's")
    table = ["| layer | schedule | fastest (us) | slowest / fastest | median / fastest | placements within 5% |",
             "|---|---|---:|---:|---:|---:|"]
    for row in rows:
        relative = list(row["relative"].values())
        table.append(f"| {row['layer']} | {row['schedule']} | {row['fastest_us']:.1f} | {max(relative):.2f} | "
                     f"{statistics.median(relative):.2f} | {sum(value <= 1.05 for value in relative)} of "
                     f"{len(relative)} |")
    write_results(RESULTS, "output-placement", f"One kernel, its output at 32 places in a page ({threads} thread(s))",
                  method, {"threads": threads, "rounds": rounds, "rows": rows}, table)


if __name__ == "__main__":
    main()
