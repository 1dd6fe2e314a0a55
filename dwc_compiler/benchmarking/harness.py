"""The CPU benchmark: check every implementation's output, then time dwc against the peers.

Every (thread count, implementation) runs alone in its own worker process: in one process, the
worker threads other libraries leave spinning slowed dwc's 2-thread runs by up to 1.6x, and
TensorFlow fixes its thread pools at start. The passes repeat in turn (A B C ... A B C ...), so
that the machine's slow and fast spells (up to 1.45x apart on one unchanged kernel here) fall on
all alike. Each output is checked against the float64 reference before it is timed; medians are
reported with the roofline measured in the same run.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..ops.compare import max_relative_error
from ..workloads import MOBILENET_V2, workload
from .peers import all_peers, is_dwc
from .roofline import copy_bandwidth_gbytes_per_s, fma_peak_gflops

logger = logging.getLogger(__name__)

CHECK_TOLERANCE = 1e-4  # float32 against float64: any correct implementation is far inside this


def machine_info() -> dict[str, Any]:
    """What this ran on: CPU model and features, cores, memory, software versions."""
    import tvm

    import dwc_compiler
    from ..targets import host_cpu_flags

    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = host_cpu_flags()
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": model, "llvm_cpu": tvm.target.codegen.llvm_get_system_cpu(), "machine": platform.machine(),
        "usable_cores": len(os.sched_getaffinity(0)), "memory_gib": round(memory_gib, 1),
        "simd": [flag for flag in ("avx2", "fma", "avx512f", "avx512bw", "asimd") if flag in flags],
        "os": platform.platform(), "python": platform.python_version(),
        "dwc": dwc_compiler.__version__, "tvm": tvm.__version__,
    }


def _time_calls(run, calls: int) -> list[float]:
    samples: list[float] = []
    for _ in range(calls):
        begin = time.perf_counter()
        run()
        samples.append((time.perf_counter() - begin) * 1e6)
    return samples


def _inputs(name: str, seed: int):
    spec = workload(name)
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    # Plain NumPy arrays, as users make them (large ones start 16 bytes past a 64-byte
    # boundary here); the dwc-aligned variant copies its input to a 64-byte boundary itself.
    data = rng.standard_normal(spec.input_shape).astype(np.float32)
    weights = rng.standard_normal(spec.filter_shape).astype(np.float32)
    return spec, data, weights


def measure_peer(threads: int, workload_names: list[str], peer_name: str, rounds: int,
                 calls_per_round: int, seed: int = 0) -> dict[str, Any]:
    """Check, then time one implementation on each workload, alone in this process."""
    (peer,) = [candidate for candidate in all_peers() if candidate.name == peer_name]
    reason = peer.unavailable()
    report: dict[str, Any] = {"versions": {peer.name: f"unavailable: {reason}" if reason else peer.version()},
                              "workloads": {}}
    if reason:
        return report
    for name in workload_names:
        spec, data, weights = _inputs(name, seed)
        try:
            prepared = peer.prepare(spec, data, weights, threads)
            error = max_relative_error(prepared.to_nhwc(prepared.run()), spec.reference(data, weights))
        except Exception as exc:  # a peer that cannot run this layer is reported, not fatal
            entry = {"status": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
        else:
            if error <= CHECK_TOLERANCE:
                for _ in range(10):
                    prepared.run()
                entry = {"status": "ok", "max_relative_error": error,
                         "samples_us": [sample for _ in range(rounds)
                                        for sample in _time_calls(prepared.run, calls_per_round)]}
            else:
                entry = {"status": f"wrong output: max relative error {error:.2e}"}
        report["workloads"][name] = {peer.name: entry}
    return report


def measure_roofline(threads: int, workload_names: list[str]) -> dict[str, Any]:
    """The FMA peak and, per workload, the copy bandwidth at its working-set size."""
    return {"fma_peak_gflops": fma_peak_gflops(threads),
            "copy_bandwidth_gbytes_per_s": {name: copy_bandwidth_gbytes_per_s(threads, workload(name).min_bytes_moved)
                                            for name in workload_names}}


def assemble(threads: int, workload_names: list[str], roofline: dict[str, Any],
             passes: list[dict[str, Any]]) -> dict[str, Any]:
    """One thread count's report from its passes: medians over all samples of all passes."""
    versions: dict[str, str] = {}
    for result in passes:
        versions.update(result["versions"])
    run: dict[str, Any] = {"threads": threads, "fma_peak_gflops": roofline["fma_peak_gflops"],
                           "peers": versions, "workloads": {}}
    for name in workload_names:
        spec = workload(name)
        bandwidth = roofline["copy_bandwidth_gbytes_per_s"][name]
        flop_bound_us = spec.flops / roofline["fma_peak_gflops"] / 1e3
        byte_bound_us = spec.min_bytes_moved / bandwidth / 1e3
        bound_us = max(flop_bound_us, byte_bound_us)
        entries: dict[str, Any] = {}
        for peer in run["peers"]:
            found = [p["workloads"][name][peer] for p in passes if peer in p["workloads"].get(name, {})]
            if not found:
                continue
            failed = [entry["status"] for entry in found if entry["status"] != "ok"]
            if failed:
                entries[peer] = {"status": failed[0]}
                continue
            samples = [sample for entry in found for sample in entry["samples_us"]]
            median_us = statistics.median(samples)
            deciles = statistics.quantiles(samples, n=10)
            entries[peer] = {
                "status": "ok", "max_relative_error": max(entry["max_relative_error"] for entry in found),
                "median_us": median_us, "p10_us": deciles[0], "p90_us": deciles[-1], "samples": len(samples),
                "pass_medians_us": [statistics.median(entry["samples_us"]) for entry in found],
                "gflops": spec.flops / median_us / 1e3, "gbytes_per_s": spec.min_bytes_moved / median_us / 1e3,
                "roofline_fraction": bound_us / median_us}
        run["workloads"][name] = {
            "spec": spec.describe(), "flops": spec.flops, "bytes": spec.min_bytes_moved,
            "copy_bandwidth_gbytes_per_s": bandwidth, "roofline_bound_us": bound_us,
            "bound_by": "FMA" if flop_bound_us >= byte_bound_us else "bandwidth", "implementations": entries}
    return run


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """Per thread count: dwc against the fastest peer per layer, and the MobileNetV2 geomean."""
    summary: dict[str, Any] = {}
    for run in report["runs"]:
        layers = {}
        for name, entry in run["workloads"].items():
            timed = {peer: data["median_us"] for peer, data in entry["implementations"].items() if "median_us" in data}
            if "dwc" not in timed:
                continue
            peers = {peer: us for peer, us in timed.items() if not is_dwc(peer)}
            fastest = min(peers, key=peers.get) if peers else None
            layers[name] = {
                "dwc_us": timed["dwc"], "fastest_peer": fastest, "fastest_peer_us": peers.get(fastest),
                "speedup_vs_fastest_peer": peers[fastest] / timed["dwc"] if fastest else None,
                "dwc_roofline_fraction": entry["implementations"]["dwc"]["roofline_fraction"],
                "bound_by": entry["bound_by"]}
            if "dwc-aligned" in timed:
                layers[name]["plain_over_aligned"] = timed["dwc"] / timed["dwc-aligned"]
            if "dwc-avx2" in timed and fastest:
                layers[name]["avx2_speedup_vs_fastest_peer"] = peers[fastest] / timed["dwc-avx2"]
            if "dwc-nchw" in timed:
                layers[name]["nchw_over_nhwc"] = timed["dwc-nchw"] / timed["dwc"]
                if "pytorch-nchw" in timed:
                    layers[name]["pytorch_nchw_over_dwc_nchw"] = timed["pytorch-nchw"] / timed["dwc-nchw"]
        speedups = [layers[name]["speedup_vs_fastest_peer"] for name in MOBILENET_V2
                    if name in layers and layers[name]["speedup_vs_fastest_peer"]]
        avx2 = [layers[name]["avx2_speedup_vs_fastest_peer"] for name in MOBILENET_V2
                if "avx2_speedup_vs_fastest_peer" in layers.get(name, {})]
        summary[str(run["threads"])] = {
            "layers": layers,
            "mobilenet_v2_geomean_speedup": statistics.geometric_mean(speedups) if speedups else None,
            "mobilenet_v2_min_speedup": min(speedups) if speedups else None,
            "mobilenet_v2_avx2_geomean_speedup": statistics.geometric_mean(avx2) if avx2 else None,
            "mobilenet_v2_avx2_min_speedup": min(avx2) if avx2 else None}
    threads = sorted(int(t) for t in summary)
    if len(threads) >= 2:
        low, high = str(threads[0]), str(threads[-1])
        summary["dwc_scaling"] = {name: summary[low]["layers"][name]["dwc_us"] / summary[high]["layers"][name]["dwc_us"]
                                  for name in summary[low]["layers"] if name in summary[high]["layers"]}
    return summary


def _in_worker(task: dict[str, Any], pool_threads: int) -> Any:
    with tempfile.TemporaryDirectory() as work:
        result_path = Path(work) / "result.json"
        task = dict(task, out=str(result_path))
        # Each library's thread count is set through its own API. OMP_NUM_THREADS is left unset:
        # with it set, dwc's 2-thread runs here were 1.3-2x slower (56x56x144: 61-66 us, not 46).
        environment = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
        environment.update(TVM_NUM_THREADS=str(pool_threads), TF_CPP_MIN_LOG_LEVEL="2")
        done = subprocess.run([sys.executable, "-m", "dwc_compiler.benchmarking.harness", json.dumps(task)],
                              env=environment, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"benchmark worker ({task['kind']}) failed:\n{done.stderr[-3000:]}")
        return json.loads(result_path.read_text())


def run_benchmark(workload_names: list[str], threads: list[int], peer_names: list[str] | None,
                  output_dir: Path, passes: int = 2, rounds: int = 5, calls_per_round: int = 40, log=print) -> Path:
    """Run the benchmark and write JSON, PNG and Markdown results into `output_dir`.

    Returns:
        The JSON file written.
    """
    from ..files import write_json_atomic
    from .report import write_chart, write_markdown

    names = [peer.name for peer in all_peers() if peer_names is None or peer.name in peer_names]
    report: dict[str, Any] = {
        "machine": machine_info(), "runs": [],
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "method": (f"each implementation alone in its own process (no other library's threads on the cores), "
                   f"{passes} passes in turn (A B C ... A B C ...); per layer the output is checked, 10 warm-up "
                   f"calls, then {rounds} rounds of {calls_per_round} timed whole calls; medians of all samples; inputs "
                   "plain NumPy arrays as NumPy allocates them (not realigned; dwc-aligned: dwc on a 64-byte-aligned "
                   "copy), identical for all; roofline = max(FLOPs / measured FMA peak, bytes / "
                   "measured copy bandwidth at the layer's working-set size)")}
    for count in threads:
        log(f"bench: {count} thread(s): roofline")
        roofline = _in_worker({"kind": "roofline", "threads": count, "workloads": workload_names}, max(threads))
        results = []
        for number in range(passes):
            for name in names:
                log(f"bench: {count} thread(s): pass {number + 1}/{passes}: {name}")
                results.append(_in_worker({"kind": "measure", "peer": name, "threads": count,
                                           "workloads": workload_names, "rounds": rounds,
                                           "calls_per_round": calls_per_round}, max(threads)))
        report["runs"].append(assemble(count, workload_names, roofline, results))
    report["summary"] = summarize(report)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M")
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path = output_dir / f"cpu-{stamp}.json"
    write_json_atomic(json_path, report)
    if importlib.util.find_spec("matplotlib") is not None:
        write_chart(report, output_dir / f"cpu-{stamp}.png")
    else:
        logger.warning("matplotlib is not installed (pip install .[bench]): no chart, only the table and JSON")
    write_markdown(report, output_dir / f"cpu-{stamp}.md")
    return json_path


def _worker(arguments: str) -> None:
    task = json.loads(arguments)
    if task["kind"] == "roofline":
        result = measure_roofline(task["threads"], task["workloads"])
    else:
        result = measure_peer(task["threads"], task["workloads"], task["peer"], task["rounds"],
                              task["calls_per_round"])
    Path(task["out"]).write_text(json.dumps(result))


if __name__ == "__main__":
    _worker(sys.argv[1])
