"""``dwc run``: run an exported module, check it against the reference, and time it."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ..errors import InvalidArgumentError
from ..manifest import load_kernel
from ..reference import TOLERANCES, matches_reference, reference_depthwise


def _array(path: Path | None, shape, dtype, rng: np.random.Generator, parameter: str) -> np.ndarray:
    if path is None:
        return rng.standard_normal(shape).astype(dtype)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InvalidArgumentError(f"{parameter}: cannot read {path} as a .npy file ({exc})") from exc


@click.command("run")
@click.argument("module", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--input", "input_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Input as a .npy file (default: random normal data), e.g. x.npy.")
@click.option("--filter", "filter_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Filter [KH, KW, C, M] as a .npy file (default: random normal data), e.g. w.npy.")
@click.option("--save-output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the output to this .npy file, e.g. y.npy.")
@click.option("--repeats", type=click.IntRange(min=1), default=100, show_default=True,
              help="Timed calls (the median is reported), e.g. --repeats 500.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
def command(module: Path, input_path: Path | None, filter_path: Path | None, save_output: Path | None,
            repeats: int, seed: int) -> None:
    """Run an exported module, check it against a float64 reference, and time it.

    Exits with code 1 when the output differs from the reference by more than the dtype's
    tolerance.

    \b
    Examples:
      dwc run k.so
      dwc run k.so --input x.npy --filter w.npy --save-output y.npy
      dwc run arm.so            # an aarch64 module runs under qemu-user
    """
    kernel = load_kernel(module)
    spec = kernel.spec
    rng = np.random.default_rng(seed)
    data = _array(input_path, spec.input_shape, spec.dtype, rng, "input")
    weights = _array(filter_path, spec.filter_shape, spec.dtype, rng, "filter")
    output = kernel(data, weights)
    if save_output is not None:
        np.save(save_output, output)
    matches, error = matches_reference(output, reference_depthwise(spec, data, weights), spec.dtype)
    click.echo(f"module   {module} ({kernel.target.name}, {kernel.schedule})")
    click.echo(f"spec     {spec.describe()}")
    verdict = "OK" if matches else "MISMATCH"
    click.echo(f"check    {verdict}: max relative error {error:.2e} against float64 NumPy "
               f"(tolerance {TOLERANCES[spec.dtype]:.0e})")
    if kernel.target.runs_natively:
        result = kernel.benchmark(repeats=repeats)
        click.echo(f"time     median {result.median_us:.1f} us over {result.repeats} calls "
                   f"(min {result.min_us:.1f}), {result.gflops:.1f} GFLOP/s, {result.gbytes_per_s:.1f} GB/s")
    else:
        result = kernel.benchmark(repeats=2, warmup=0, min_time_s=0)
        click.echo(f"time     median {result.median_us / 1e3:.0f} ms per call under qemu-user emulation "
                   "(process start included; not this CPU's speed)")
    if not matches:
        raise SystemExit(1)
