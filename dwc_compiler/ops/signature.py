"""The argument list an op declares: what a compiled kernel takes, in order, the output last."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Argument:
    """One array argument of a kernel.

    Attributes:
        name: the parameter's name, used in errors (``input``, ``filter``, ``bias``, ``output``).
        shape: its shape.
        dtype: its element type's name.
        layout: its dimensions in words, for errors (``[N, H, W, C]``).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    layout: str = ""


def split_arguments(arguments: tuple[Argument, ...]) -> tuple[tuple[Argument, ...], Argument]:
    """(inputs, output) of an argument list (the output is always last)."""
    return arguments[:-1], arguments[-1]
