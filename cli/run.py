"""``dwc run``: run an exported module, check it against the reference, and time it."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ..errors import InvalidArgumentError
from ..ops.compare import TOLERANCES, matches_reference
from ..runtime import load


def _array(path: Path | None, shape, dtype, rng: np.random.Generator, parameter: str) -> np.ndarray:
    if path is None:
        return rng.standard_normal(shape).astype(dtype)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InvalidArgumentError(f"{parameter}: cannot read {path} as a .npy file ({exc})") from exc


def _npy_option(name: str, what: str):
    return click.option(f"--{name}", f"{name.replace('-', '_')}_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                        help=f"{what} as a .npy file (default: random normal data), e.g. {name.replace('-', '_')}.npy.")


@click.command("run")
@click.argument("module", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_npy_option("input", "Input")
@_npy_option("filter", "Filter, in the module's filter format,")
@_npy_option("bias", "Bias of C*M values (after the depthwise step), for a module built with --bias,")
@_npy_option("pointwise-filter", "Pointwise filter [1,1,C*M,O] of a separable module,")
@_npy_option("pointwise-bias", "Bias of O values, for a separable module built with --pointwise-bias,")
@click.option("--save-output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the output to this .npy file, e.g. y.npy.")
@click.option("--repeats", type=click.IntRange(min=1), default=100, show_default=True,
              help="Timed calls (the median is reported), e.g. --repeats 500.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
def command(module: Path, input_path: Path | None, filter_path: Path | None, bias_path: Path | None,
            pointwise_filter_path: Path | None, pointwise_bias_path: Path | None,
            save_output: Path | None, repeats: int, seed: int) -> None:
    """Run an exported module, check it against a float64 reference, and time it.

    Every array the module takes (input, filter and, for a module built with --bias, a bias;
    a separable module's --filter and --bias are its depthwise step's, beside its pointwise
    filter and bias) is read from its option or made up of random normal data. Exits with
    code 1 when the output differs from the reference by more than the dtype's tolerance.

    \b
    Examples:
      dwc run k.so
      dwc run k.so --input x.npy --filter w.npy --save-output y.npy
      dwc run fused.so --bias b.npy
      dwc run separable.so --filter dw.npy --pointwise-filter pw.npy
      dwc run arm.so            # an aarch64 module runs under qemu-user
    """
    kernel = load(module)
    spec = kernel.spec
    rng = np.random.default_rng(seed)
    inputs = spec.arguments[:-1]
    names = [argument.name for argument in inputs]
    separable = "depthwise_filter" in names
    given = {"input": input_path, "depthwise_filter" if separable else "filter": filter_path,
             "depthwise_bias" if separable else "bias": bias_path, "pointwise_filter": pointwise_filter_path,
             "pointwise_bias": pointwise_bias_path}
    for name, path in given.items():
        if path is not None and name not in names:
            option = {"depthwise_bias": "bias", "depthwise_filter": "filter"}.get(name, name).replace("_", "-")
            raise InvalidArgumentError(f"{name}: {module.name} takes no {name} ({', '.join(names)}), "
                                       f"so --{option} does not apply")
    arrays = [_array(given.get(argument.name), argument.shape, argument.dtype, rng, argument.name)
              for argument in inputs]
    output = kernel(*arrays)
    if save_output is not None:
        np.save(save_output, output)
    matches, error = matches_reference(output, spec.reference(*arrays), spec.dtype)
    click.echo(f"module   {module} ({kernel.target.name}, {kernel.schedule})")
    click.echo(f"spec     {spec.describe()}")
    verdict = "OK" if matches else "MISMATCH"
    click.echo(f"check    {verdict}: max relative error {error:.2e} against float64 NumPy "
               f"(tolerance {TOLERANCES[spec.dtype]:.0e})")
    result = kernel.benchmark(repeats=repeats)
    if kernel.target.runs_natively:
        click.echo(f"time     median {result.median_us:.1f} us over {result.repeats} calls "
                   f"(min {result.min_us:.1f}), {result.gflops:.1f} GFLOP/s, {result.gbytes_per_s:.1f} GB/s")
    else:
        click.echo(f"time     median {result.median_us / 1e3:.0f} ms per call under qemu-user emulation "
                   "(process start included; not this CPU's speed)")
    if not matches:
        raise SystemExit(1)
