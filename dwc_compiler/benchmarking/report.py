"""Writing benchmark results for people: a PNG chart and a Markdown table."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from ..workloads import MOBILENET_V2


def write_chart(report: dict[str, Any], path: Path) -> None:
    """Bars of each implementation's time relative to dwc, one panel per thread count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    figure, axes = plt.subplots(len(runs), 1, figsize=(14, 4.5 * len(runs)), squeeze=False)
    for axis, run in zip(axes[:, 0], runs):
        names = list(run["workloads"])
        peers = sorted({peer for entry in run["workloads"].values() for peer, data in entry["implementations"].items()
                        if "median_us" in data}, key=lambda p: (p != "dwc", p))
        width = 0.8 / max(len(peers), 1)
        for index, peer in enumerate(peers):
            ratios = []
            for name in names:
                entries = run["workloads"][name]["implementations"]
                dwc_us = entries.get("dwc", {}).get("median_us")
                peer_us = entries.get(peer, {}).get("median_us")
                ratios.append(peer_us / dwc_us if dwc_us and peer_us else 0)
            axis.bar([i + index * width for i in range(len(names))], ratios, width, label=peer)
        axis.axhline(1.0, color="black", linewidth=0.8)
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(names))])
        axis.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        axis.set_ylabel("time / dwc's time (higher: dwc faster)")
        axis.set_title(f"{run['threads']} thread(s) - {report['machine']['cpu']} ({report['machine']['llvm_cpu']})")
        axis.legend(fontsize=8, ncol=3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_markdown(report: dict[str, Any], path: Path) -> None:
    """A table per thread count: dwc and each peer in microseconds, dwc's roofline fraction and speedup."""
    machine = report["machine"]
    lines = [f"# CPU benchmark, {report['started']}", "",
             f"Machine: {machine['cpu']} (LLVM {machine['llvm_cpu']}), {machine['usable_cores']} cores, "
             f"{', '.join(machine['simd'])}; dwc {machine['dwc']}, TVM {machine['tvm']}, Python {machine['python']}.", "",
             f"Method: {report['method']}.", ""]
    for run in report["runs"]:
        threads = str(run["threads"])
        summary = report["summary"][threads]
        peers = [peer for peer in run["peers"] if peer != "dwc"]
        lines += [f"## {threads} thread(s): FMA peak {run['fma_peak_gflops']:.0f} GFLOP/s", "",
                  "| workload | dwc us | GFLOP/s | GB/s | roofline | " + " | ".join(f"{p} us" for p in peers)
                  + " | fastest peer | dwc speedup |",
                  "|---|---|---|---|---|" + "---|" * len(peers) + "---|---|"]
        for name, entry in run["workloads"].items():
            impl = entry["implementations"]
            dwc_entry = impl.get("dwc", {})
            cells = [f"{impl[p]['median_us']:.1f}" if "median_us" in impl.get(p, {}) else impl.get(p, {}).get("status", "n/a")
                     for p in peers]
            layer = summary["layers"].get(name, {})
            speedup = layer.get("speedup_vs_fastest_peer")
            lines.append(
                f"| {name} | {dwc_entry.get('median_us', float('nan')):.1f} | {dwc_entry.get('gflops', float('nan')):.1f} | "
                f"{dwc_entry.get('gbytes_per_s', float('nan')):.1f} | {100 * dwc_entry.get('roofline_fraction', float('nan')):.0f}% "
                f"({entry['bound_by']}) | " + " | ".join(cells)
                + f" | {layer.get('fastest_peer')} | {speedup:.2f}x |" if speedup else " | - | - |")
        geomean = summary.get("mobilenet_v2_geomean_speedup")
        if geomean:
            lines += ["", f"MobileNetV2 layers: dwc is {geomean:.2f}x the fastest peer (geomean), "
                          f"{summary['mobilenet_v2_min_speedup']:.2f}x at the least.", ""]
        avx2 = summary.get("mobilenet_v2_avx2_geomean_speedup")
        if avx2:
            lines += [f"The x86-avx2 kernels on this CPU (dwc-avx2): {avx2:.2f}x the fastest peer (geomean), "
                      f"{summary['mobilenet_v2_avx2_min_speedup']:.2f}x at the least.", ""]
        lines += _variant_lines(summary["layers"])
    scaling = report["summary"].get("dwc_scaling")
    if scaling:
        lines += ["## dwc thread scaling (time at fewest threads / time at most)", "",
                  "| workload | speedup |", "|---|---|"] + [f"| {k} | {v:.2f}x |" for k, v in scaling.items()]
    path.write_text("\n".join(lines) + "\n")


VARIANT_RATIOS = (
    ("plain_over_aligned", "dwc on plain NumPy input / on a 64-byte-aligned copy"),
    ("nchw_over_nhwc", "dwc NCHW / dwc NHWC"),
    ("pytorch_nchw_over_dwc_nchw", "PyTorch NCHW / dwc NCHW"),
)


def _variant_lines(layers: dict[str, Any]) -> list[str]:
    """Geomean and range of each ratio between dwc's variants present in `layers`: over the
    MobileNetV2 layers among them, and over all of them."""
    lines = []
    for key, label in VARIANT_RATIOS:
        parts = []
        for scope, names in (("the MobileNetV2 layers", [name for name in layers if name in MOBILENET_V2]),
                             ("all workloads", list(layers))):
            values = [layers[name][key] for name in names if key in layers[name]]
            if values:
                geomean = math.exp(statistics.fmean(math.log(v) for v in values))
                parts.append(f"{geomean:.2f}x geomean over {scope} ({min(values):.2f}-{max(values):.2f}x)")
        if parts:
            lines.append(f"- {label}: {'; '.join(parts)}.")
    return lines + [""] if lines else []
