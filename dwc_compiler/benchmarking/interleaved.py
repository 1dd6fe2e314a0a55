"""Interleaved rounds of whole calls in one process, paired statistics, result files, and the
benchmark scripts' numeric arguments.

The machines dwc is measured on are shared: the same kernel can drift between two speeds 1.45x
apart within seconds. Comparing calls measured in the same round, with the order reversed every
other round and each block warmed up first, cancels most of that drift; medians over rounds
do the rest. The benchmarks in ``benchmarks/`` that compare variants in one process use this.
"""

from __future__ import annotations

import contextlib
import datetime
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, ContextManager

from ..files import write_json_atomic
from .harness import machine_info


def int_arguments(*defaults: int) -> list[int]:
    """The script's positional arguments as ints (``THREADS ROUNDS``, say), each one not given
    taking its entry of `defaults`."""
    given = sys.argv[1:len(defaults) + 1]
    return [int(value) for value in given] + list(defaults[len(given):])


def block_mean_us(call: Callable[[], Any], warmup: int, timed: int) -> float:
    """`warmup` untimed calls, then the mean time of `timed` calls, in microseconds."""
    for _ in range(warmup):
        call()
    start = time.perf_counter()
    for _ in range(timed):
        call()
    return (time.perf_counter() - start) / timed * 1e6


def interleaved_rounds(calls: dict[str, Callable[[], Any]], rounds: int, warmup: int, timed: int,
                       contexts: dict[str, Callable[[], ContextManager[Any]]] | None = None) -> dict[str, list[float]]:
    """Each round, one block of every call (in order, reversed every other round): per call,
    the block means of all rounds, in microseconds. `contexts`: for some calls, what each of
    their blocks (warm-up included) runs inside (``contexts[name]()``, a context manager: a
    patched setting, say)."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for round_index in range(rounds):
        order = list(calls) if round_index % 2 == 0 else list(reversed(calls))
        for name in order:
            with (contexts[name]() if contexts and name in contexts else contextlib.nullcontext()):
                samples[name].append(block_mean_us(calls[name], warmup, timed))
    return samples


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median over rounds of the per-round ratio (paired)."""
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def median_difference(minuends: list[float], subtrahends: list[float]) -> float:
    """The median over rounds of the per-round difference (paired)."""
    return statistics.median(a - b for a, b in zip(minuends, subtrahends))


def write_results(directory: Path, name: str, title: str, method: str, report: dict[str, Any],
                  table: list[str]) -> Path:
    """Write ``<name>-<stamp>.json`` (`report` with the machine, method and stamp added) and
    ``.md`` (`title`, the machine, `method`, then the `table` lines) into `directory`.

    Returns:
        The Markdown file's path.
    """
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M")
    machine = machine_info()
    write_json_atomic(directory / f"{name}-{stamp}.json",
                      {"machine": machine, "method": method, "created": stamp, **report})
    lines = [f"# {title}", "",
             f"Machine: {machine['cpu']} (LLVM `{machine['llvm_cpu']}`), {machine['usable_cores']} cores, "
             f"dwc {machine['dwc']}, TVM {machine['tvm']}.", "", f"Method: {method}.", "", *table]
    markdown = directory / f"{name}-{stamp}.md"
    markdown.write_text("\n".join(lines) + "\n")
    return markdown
