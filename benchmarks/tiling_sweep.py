"""Time every register tile the x86 schedule can take on each workload (the kernel alone).

usage: python benchmarks/tiling_sweep.py THREADS [WORKLOAD,WORKLOAD,...|all]

Writes benchmarks/results/tiling-sweep-<THREADS>thread.json: per workload, the median time of
each (vectors per channel block, tile rows, tile columns) that divides the output exactly.
"""

import json
import statistics
import sys
from pathlib import Path

import numpy as np

import dwc_compiler as dwc
from dwc_compiler.ops.primfunc import prim_func
from dwc_compiler.schedules.cpu import CpuTiling, schedule_cpu
from dwc_compiler.targets import resolve_target
from dwc_compiler.workloads import WORKLOADS

CANDIDATES = [(1, 1, 7), (1, 1, 4), (1, 1, 8), (1, 2, 4), (1, 2, 2), (1, 2, 3), (1, 2, 7), (2, 1, 4),
              (2, 1, 7), (2, 2, 2), (1, 4, 2), (1, 1, 14), (1, 3, 4)]


def main() -> None:
    import tvm

    threads = int(sys.argv[1])
    dwc.set_num_threads(threads)
    target = resolve_target("host")
    lanes = target.lanes("float32")
    names = list(WORKLOADS) if len(sys.argv) < 3 or sys.argv[2] == "all" else sys.argv[2].split(",")
    results = {}
    for name in names:
        spec = WORKLOADS[name]
        data = dwc.empty_aligned(spec.input_shape, "float32")
        data[...] = np.random.default_rng(0).standard_normal(spec.input_shape)
        weights = dwc.empty_aligned(spec.filter_shape, "float32")
        weights[...] = np.random.default_rng(1).standard_normal(spec.filter_shape)
        out = dwc.empty_aligned(spec.output_shape, "float32")
        modules = {}
        for vectors, rows, cols in CANDIDATES:
            if spec.out_height % rows or spec.out_width % cols or spec.out_channels % (lanes * vectors):
                continue
            schedule = schedule_cpu(tvm.s_tir.Schedule(prim_func(spec)), spec,
                                    CpuTiling(lanes, vectors, rows, cols))
            with tvm.transform.PassContext(opt_level=3):
                modules[(vectors, rows, cols)] = tvm.compile(schedule.mod, target=target.tvm()).jit()
        samples = {key: [] for key in modules}
        for _ in range(7):  # interleaved rounds: the machine's slow spells hit every candidate
            for key, module in modules.items():
                samples[key] += module.time_evaluator("main", tvm.cpu(), number=20, repeat=3)(data, weights, out).results
        medians = {key: statistics.median(values) * 1e6 for key, values in samples.items()}
        best = min(medians, key=medians.get)
        print(f"{name:22s} best {best} {medians[best]:.1f} us", flush=True)
        results[name] = {str(key): value for key, value in medians.items()}
    path = Path(__file__).parent / "results" / f"tiling-sweep-{threads}thread.json"
    path.write_text(json.dumps({"machine": target.description, "medians_us": results}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
