"""Per MobileNetV2 layer: the hand schedule, the tuned build, and the fastest peer.

usage: python benchmarks/tuning_table.py TARGET [CPU_BENCHMARK_JSON]

Builds each layer for TARGET twice, with the tuning records (shipped ones included) and with
the hand schedule only, and times both through the public kernel call in interleaved rounds at
one thread (medians). The fastest peer's time at one thread is read from CPU_BENCHMARK_JSON (a
`dwc bench` result, default: the newest in benchmarks/results), whose date the table names.
Writes benchmarks/results/tuning-<TARGET>.md and .json.
"""

import json
import statistics
import sys
import time
from pathlib import Path

import dwc_compiler as dwc
from dwc_compiler.files import write_json_atomic
from dwc_compiler.workloads import MOBILENET_V2

RESULTS = Path(__file__).resolve().parent / "results"
ROUNDS, CALLS = 7, 40


def _time_interleaved(kernels, data, weights):
    samples = {name: [] for name in kernels}
    for _ in range(ROUNDS):
        for name, kernel in kernels.items():
            for _ in range(CALLS):
                start = time.perf_counter()
                kernel(data, weights)
                samples[name].append((time.perf_counter() - start) * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    target = sys.argv[1]
    bench_path = Path(sys.argv[2]) if len(sys.argv) > 2 else max(RESULTS.glob("cpu-*.json"))
    bench = json.loads(bench_path.read_text())
    one_thread = next(run for run in bench["runs"] if run["threads"] == 1)
    dwc.set_num_threads(1)
    rows = []
    for name, spec in MOBILENET_V2.items():
        tuned = dwc.build(spec, target)
        hand = dwc.build(spec, target, use_records=False)
        data = dwc.empty_aligned(spec.input_shape, "float32")
        data[...] = 1.0
        weights = dwc.empty_aligned(spec.filter_shape, "float32")
        weights[...] = 0.5
        medians = _time_interleaved({"hand": hand, "tuned": tuned}, data, weights)
        peers = {peer: entry["median_us"] for peer, entry in one_thread["workloads"][name]["implementations"].items()
                 if peer != "dwc" and "median_us" in entry}
        fastest = min(peers, key=peers.get)
        rows.append({"layer": name, "hand_us": medians["hand"], "tuned_us": medians["tuned"],
                     "tuned_schedule": tuned.schedule, "choice": (tuned.record or {}).get("choice", "hand schedule"),
                     "fastest_peer": fastest, "fastest_peer_us": peers[fastest]})
        print(f"{name:22s} hand {medians['hand']:7.1f} us  tuned {medians['tuned']:7.1f} us ({tuned.schedule})  "
              f"{fastest} {peers[fastest]:7.1f} us", flush=True)
    machine = bench["machine"]
    lines = [f"# Tuned vs hand vs fastest peer: {target}, 1 thread", "",
             f"Machine: {machine['cpu']} ({machine['llvm_cpu']}), {machine['usable_cores']} cores. hand and tuned: "
             f"medians of {ROUNDS} interleaved rounds of {CALLS} whole calls, measured together; fastest peer: "
             f"from {bench_path.name} ({bench['started']}), a separate run on the same machine.", "",
             "| layer | hand us | tuned us | tuned build uses | fastest peer | peer us |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['layer']} | {r['hand_us']:.1f} | {r['tuned_us']:.1f} | {r['choice']} | {r['fastest_peer']} | "
              f"{r['fastest_peer_us']:.1f} |" for r in rows]
    (RESULTS / f"tuning-{target}.md").write_text("\n".join(lines) + "\n")
    write_json_atomic(RESULTS / f"tuning-{target}.json", {"target": target, "benchmark": bench_path.name,
                                                          "machine": machine, "rows": rows})
    print(f"wrote {RESULTS / f'tuning-{target}.md'}")


if __name__ == "__main__":
    main()
