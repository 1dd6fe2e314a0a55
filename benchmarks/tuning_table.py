"""Per MobileNetV2 layer: the hand schedule, the tuned build, and the fastest peer.

usage: python benchmarks/tuning_table.py TARGET [CPU_BENCHMARK_JSON]

Builds each layer for TARGET twice, with the tuning records (shipped ones included) and with
the hand schedule only, and times both through the public kernel call in interleaved rounds
(medians) with the target's thread count, the one tuning measured with. The fastest peer's time
at that thread count is read from CPU_BENCHMARK_JSON (a
`dwc bench` result, default: the newest in benchmarks/results), whose date the table names.
The trials each layer's tuning job measured come from its verdict in the shipped records.
Writes benchmarks/results/tuning-<TARGET>.md and .json.
"""

import json
import statistics
import sys
import time
from pathlib import Path

import dwc_compiler as dwc
from dwc_compiler.files import write_json_atomic
from dwc_compiler.tuning.records import shipped_stores, tvm_version
from dwc_compiler.targets import resolve_target
from dwc_compiler.workloads import MOBILENET_V2

RESULTS = Path(__file__).resolve().parent / "results"
REPOSITORY = RESULTS.parent.parent
ROUNDS, CALLS = 15, 40


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
    threads = resolve_target(target).tvm_target.get("num-cores", 1)
    peer_run = next(run for run in bench["runs"] if run["threads"] == threads)
    dwc.set_num_threads(threads)
    shipped = [entry for store in shipped_stores(target) if store.version == tvm_version() for entry in store.read()]
    trials = {entry["workload_key"]: entry.get("trials") for entry in shipped if entry["kind"] == "verdict"}
    rows = []
    for name, spec in MOBILENET_V2.items():
        tuned = dwc.build(spec, target)
        hand = dwc.build(spec, target, use_records=False)
        data = dwc.empty_aligned(spec.input_shape, "float32")
        data[...] = 1.0
        weights = dwc.empty_aligned(spec.filter_shape, "float32")
        weights[...] = 0.5
        medians = _time_interleaved({"hand": hand, "tuned": tuned}, data, weights)
        peers = {peer: entry["median_us"] for peer, entry in peer_run["workloads"][name]["implementations"].items()
                 if peer != "dwc" and "median_us" in entry}
        fastest = min(peers, key=peers.get)
        rows.append({"layer": name, "trials": trials.get(spec.tuning_key), "hand_us": medians["hand"],
                     "tuned_us": medians["tuned"],
                     "tuned_schedule": tuned.schedule, "choice": (tuned.record or {}).get("choice", "hand schedule").replace(f"{REPOSITORY}/", ""),
                     "fastest_peer": fastest, "fastest_peer_us": peers[fastest]})
        print(f"{name:22s} hand {medians['hand']:7.1f} us  tuned {medians['tuned']:7.1f} us ({tuned.schedule})  "
              f"{fastest} {peers[fastest]:7.1f} us", flush=True)
    machine = bench["machine"]
    lines = [f"# Tuned vs hand vs fastest peer: {target}, {threads} thread(s)", "",
             f"Machine: {machine['cpu']} ({machine['llvm_cpu']}), {machine['usable_cores']} cores. hand and tuned: "
             f"medians of {ROUNDS} interleaved rounds of {CALLS} whole calls, measured together; fastest peer: "
             f"from {bench_path.name} ({bench['started']}), a separate run on the same machine.", "",
             "| layer | trials | hand us | tuned us | tuned/hand | tuned build uses | fastest peer | peer us |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['layer']} | {r['trials'] if r['trials'] is not None else '?'} | {r['hand_us']:.1f} | "
              f"{r['tuned_us']:.1f} | {r['hand_us'] / r['tuned_us']:.2f}x | {r['choice']} | {r['fastest_peer']} | "
              f"{r['fastest_peer_us']:.1f} |" for r in rows]
    (RESULTS / f"tuning-{target}.md").write_text("\n".join(lines) + "\n")
    write_json_atomic(RESULTS / f"tuning-{target}.json", {"target": target, "threads": threads,
                                                          "benchmark": bench_path.name,
                                                          "machine": machine, "rows": rows})
    print(f"wrote {RESULTS / f'tuning-{target}.md'}")


if __name__ == "__main__":
    main()
