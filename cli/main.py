"""The ``dwc`` command: a click group whose errors are one line and exit code 2."""

from __future__ import annotations

import logging
import sys

import click

from .._version import __version__
from ..errors import DwcError


class DwcGroup(click.Group):
    """A group that turns any DwcError into ``dwc: error: ...`` on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DwcError as exc:
            click.echo(f"dwc: error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=DwcGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dwc")
@click.option("-v", "--verbose", is_flag=True, help="Log what the compiler does (schedules, fallbacks).")
def cli(verbose: bool) -> None:
    """dwc compiles depthwise 2-D convolution (tf.nn.depthwise_conv2d) into fast native kernels.

    \b
    Examples:
      dwc targets
      dwc build --target host --input-shape 1,56,56,144 --filter-shape 3,3,144,1 -o k.so
      dwc run k.so
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="dwc: %(levelname)s: %(message)s")


def _register() -> None:
    from . import bench, build, records, run, targets, tune

    for module in (build, run, tune, records, targets, bench):
        cli.add_command(module.command)


_register()


def main() -> None:
    """Entry point of the ``dwc`` console script."""
    cli(prog_name="dwc")


if __name__ == "__main__":  # python -m dwc_compiler.cli.main
    sys.exit(main())
