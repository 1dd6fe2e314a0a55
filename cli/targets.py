"""``dwc targets``: the named targets and what ``host`` resolves to."""

from __future__ import annotations

import click

from ..errors import UnknownTargetError
from ..targets import resolve_target, target_names


@click.command("targets")
def command() -> None:
    """List the named targets, with the TVM target each compiles for.

    \b
    Example:
      dwc targets
    """
    for name in target_names():
        try:
            target = resolve_target(name)
        except UnknownTargetError as unavailable:
            click.echo(f"{name:14s} not available here: {str(unavailable).removeprefix('target: ')}")
            continue
        click.echo(f"{name:14s} {target.description}")
        click.echo(f"{'':14s}   family {target.family}, tvm target {target.tvm_target}")
