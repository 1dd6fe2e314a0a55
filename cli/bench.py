"""``dwc bench``: time dwc against PyTorch, TensorFlow, ONNX Runtime and XNNPACK on named layers."""

from __future__ import annotations

from pathlib import Path

import click

from ..benchmarking.peers import all_peers
from ..errors import InvalidArgumentError
from ..ops.depthwise import DepthwiseSpec
from ..workloads import WORKLOADS, workload
from .options import IntList


@click.command("bench")
@click.option("--workloads", "workload_names", default="all", show_default=True, metavar="NAMES",
              help="Comma-separated depthwise workload names (see `dwc build --help`), or all, "
                   "e.g. mbv2-7x7x960-s1,mbv2-56x56x144-s1.")
@click.option("--threads", type=IntList(), default="1,2", show_default=True,
              help="Thread counts to run at, e.g. 1,2.")
@click.option("--peers", "peer_names", default="all", show_default=True, metavar="NAMES",
              help="Implementations to time, or all: " + ", ".join(peer.name for peer in all_peers()) + ".")
@click.option("--passes", type=click.IntRange(min=1), default=3, show_default=True,
              help="Times each implementation's process is run, in turn with the others.")
@click.option("--rounds", type=click.IntRange(min=1), default=5, show_default=True,
              help="Rounds of timed calls per layer and pass.")
@click.option("--calls", type=click.IntRange(min=1), default=40, show_default=True,
              help="Timed calls per round.")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("benchmarks/results"),
              show_default=True, help="Where the JSON, PNG chart and Markdown table are written.")
def command(workload_names: str, threads: tuple[int, ...], peer_names: str, passes: int, rounds: int, calls: int,
            output_dir: Path) -> None:
    """Check, then time dwc against the libraries people use, and write the results.

    dwc runs as users call it, on plain NumPy arrays; `dwc-aligned` times the same call on a
    64-byte-aligned copy of the input, `dwc-nchw` the NCHW call and `dwc-avx2` the x86-avx2
    kernels (on a CPU that runs them), and the table gives their ratios.

    Each implementation's output is checked against a float64 reference before it is timed.
    Peers need `pip install .[bench]`; missing ones are reported as unavailable.

    \b
    Examples:
      dwc bench
      dwc bench --workloads mbv2-7x7x960-s1 --threads 1 --peers dwc,xnnpack-litert --passes 1
    """
    from ..benchmarking.harness import run_benchmark

    depthwise_names = [name for name, spec in WORKLOADS.items() if isinstance(spec, DepthwiseSpec)]
    names = depthwise_names if workload_names == "all" else [name.strip() for name in workload_names.split(",")]
    for name in names:
        if not isinstance(workload(name), DepthwiseSpec):  # workload() names the known ones for a typo
            raise InvalidArgumentError(f"workloads: {name} is a separable block; dwc bench times depthwise layers "
                                       "(benchmarks/separable.py times the separable blocks against their peers)")
    known = [peer.name for peer in all_peers()]
    peers = None if peer_names == "all" else [name.strip() for name in peer_names.split(",")]
    for name in peers or []:
        if name not in known:
            raise InvalidArgumentError(f"peers: unknown implementation {name!r}; expected some of {', '.join(known)}")
    if not threads or min(threads) < 1:
        raise InvalidArgumentError(f"threads: expected positive thread counts, got {list(threads)}")
    path = run_benchmark(names, list(threads), peers, output_dir, passes=passes, rounds=rounds,
                         calls_per_round=calls, log=lambda line: click.echo(line, err=True))
    click.echo(path.with_suffix(".md").read_text())
    click.echo(f"wrote {path}, {path.with_suffix('.png').name} and {path.with_suffix('.md').name}")
