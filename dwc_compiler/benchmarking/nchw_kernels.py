"""Two NCHW kernels of one layer against each other and against the NHWC kernel, in one process:
what the NCHW benchmarks in ``benchmarks/`` (``strided_copy.py``, ``nchw_windows.py``, ...) share.

Each kernel is called whole (``Kernel.call``) on plain NumPy arrays (not realigned), checked
against the float64 reference first, then timed in interleaved rounds (``interleaved.py``).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np

import dwc_compiler as dwc

from ..workloads import MOBILENET_V2
from .interleaved import int_arguments, interleaved_rounds, median_ratio, write_results

WARMUP_CALLS, TIMED_CALLS = 5, 20
MAX_RELATIVE_ERROR = 1e-5
NEW, OLD, NHWC = "new", "old", "nhwc"


def nchw_spec(spec: Any) -> Any:
    """The NCHW form of the NHWC layer `spec` (same filter, strides and padding)."""
    batch, height, width, channels = spec.input_shape
    return dwc.DepthwiseSpec.create((batch, channels, height, width), spec.filter_shape, list(spec.strides), "SAME",
                                    "NCHW")


def built_now_and_before(before: Callable[[], ContextManager[Any]], target: str = "host") -> Callable[[Any, bool], Any]:
    """What the A/B benchmark scripts compare: ``build(spec, True)``, the hand-scheduled kernel of
    `spec` for `target` as dwc builds it now, and ``build(spec, False)``, the same built inside
    ``before()`` (a patch that puts back what the change being measured replaced); a
    `build_nchw` for :func:`run_comparison`."""

    def build(spec: Any, now: bool) -> Any:
        if now:
            return dwc.build(spec, target, use_records=False)
        with before():
            return dwc.build(spec, target, use_records=False)

    return build


def measure_layer(name: str, spec: Any, build_nchw: Callable[[Any, bool], Any], rounds: int,
                  target: str = "host") -> dict[str, Any]:
    """Interleaved rounds of three kernels of the NHWC layer `spec`: ``build_nchw(nchw_spec,
    True)`` (``new``), ``build_nchw(nchw_spec, False)`` (``old``) and dwc's NHWC kernel for
    `target` (``nhwc``), each checked against the reference first.

    Returns:
        The medians (``median_us``), the paired ratios ``new_over_old``, ``new_over_nhwc`` and
        ``old_over_nhwc``, the errors and every round's block means (``samples_us``).
    """
    rng = np.random.default_rng(0)
    nhwc = rng.random(spec.input_shape).astype(np.float32)  # as NumPy allocates it: not realigned
    nchw = np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
    weights = rng.random(spec.filter_shape).astype(np.float32)
    layer = nchw_spec(spec)
    kernels = {NEW: (build_nchw(layer, True), nchw), OLD: (build_nchw(layer, False), nchw),
               NHWC: (dwc.build(spec, target), nhwc)}
    reference = spec.reference(nhwc, weights).transpose(0, 3, 1, 2)
    errors = {}
    for kind, (kernel, data) in kernels.items():
        result = kernel(data, weights)
        result = result.transpose(0, 3, 1, 2) if kind == NHWC else result
        errors[kind] = float(np.max(np.abs(result - reference)) / np.max(np.abs(reference)))
        if errors[kind] > MAX_RELATIVE_ERROR:
            raise AssertionError(f"{name} {kind}: max relative error {errors[kind]:.3g}")
    calls = {kind: (lambda kernel=kernel, data=data: kernel.call(data, weights))
             for kind, (kernel, data) in kernels.items()}
    samples = interleaved_rounds(calls, rounds, WARMUP_CALLS, TIMED_CALLS)
    return {"layer": name, "median_us": {kind: statistics.median(values) for kind, values in samples.items()},
            "new_over_old": median_ratio(samples[NEW], samples[OLD]),
            "new_over_nhwc": median_ratio(samples[NEW], samples[NHWC]),
            "old_over_nhwc": median_ratio(samples[OLD], samples[NHWC]),
            "max_relative_error": errors, "samples_us": samples}


def method_text(threads: int, rounds: int, kinds: tuple[str, ...]) -> str:
    """The method line of these benchmarks' result files."""
    return (f"{threads} thread(s); whole Kernel.call calls on plain NumPy arrays (not realigned), the kernels' "
            f"own outputs; {rounds} interleaved rounds ({', '.join(kinds)}, then reversed), each block "
            f"{WARMUP_CALLS} warm-up calls then {TIMED_CALLS} timed calls (block mean); medians over rounds, "
            f"ratios the medians of the per-round ratios")


def results_table(rows: list[dict[str, Any]], new_label: str, old_label: str) -> list[str]:
    """The Markdown table of `rows` (from :func:`measure_layer`) and its geomean line."""
    table = [f"| layer | NCHW, {new_label} (us) | NCHW, {old_label} (us) | NHWC (us) | {new_label} / {old_label} | "
             f"NCHW / NHWC | before: NCHW / NHWC |", "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        medians = row["median_us"]
        table.append(f"| {row['layer']} | {medians[NEW]:.1f} | {medians[OLD]:.1f} | {medians[NHWC]:.1f} | "
                     f"{row['new_over_old']:.2f}x | {row['new_over_nhwc']:.2f}x | {row['old_over_nhwc']:.2f}x |")
    new_geomean = statistics.geometric_mean([row["new_over_nhwc"] for row in rows])
    old_geomean = statistics.geometric_mean([row["old_over_nhwc"] for row in rows])
    table += ["", f"Geomean NCHW / NHWC: {new_geomean:.2f}x with {new_label}, {old_geomean:.2f}x with {old_label}."]
    return table


def run_comparison(results: Path, name: str, title: str, build_nchw: Callable[[Any, bool], Any],
                   labels: tuple[str, str], include: Callable[[Any], bool] = lambda spec: True,
                   target: str = "host") -> None:
    """A benchmark script's whole run: ``THREADS ROUNDS`` from the command line (1, 21), every
    MobileNetV2 layer that `include` takes measured by :func:`measure_layer` with `build_nchw`
    (`labels`: what ``new`` and ``old`` are; the NHWC kernel for `target`), a line printed per
    layer, and ``<results>/<name>-<stamp>.json`` and ``.md`` written (`title` says what is
    compared)."""
    threads, rounds = int_arguments(1, 21)
    dwc.set_num_threads(threads)
    new_label, old_label = labels
    rows = []
    for layer, spec in MOBILENET_V2.items():
        if not include(spec):
            continue
        row = measure_layer(layer, spec, build_nchw, rounds, target)
        rows.append(row)
        medians = row["median_us"]
        print(f"{layer:20s} {new_label} {medians[NEW]:7.1f}  {old_label} {medians[OLD]:7.1f}  nhwc {medians[NHWC]:7.1f}"
              f" us  {new_label} / {old_label} {row['new_over_old']:.2f}x  NCHW/NHWC {row['new_over_nhwc']:.2f}x"
              f" (was {row['old_over_nhwc']:.2f}x)", flush=True)
    table = results_table(rows, new_label, old_label)
    write_results(results, name, f"{title} ({target}, {threads} thread(s))",
                  method_text(threads, rounds, (*labels, "nhwc")),
                  {"target": target, "threads": threads, "rounds": rounds, "rows": rows}, table)
    print(table[-1])
