"""Schedule rules for dwc's ops, one module per target family (dlight style; see ``base.py``).

The rules are tried in order, the family's own first, then the generic one; the first that says
"mine" schedules the PrimFunc. ``apply_rules`` returns the schedule with the rule's name.
"""

from __future__ import annotations

from typing import Any

from ..errors import BuildError
from . import arm, cuda, generic, x86
from .base import AlignedVariants

RULES = (x86, arm, cuda, generic)


def apply_rules(func: Any, spec: Any, target: Any, tunable: bool = False, hand_decisions: bool = False,
                dwc_passes: bool = True):
    """Schedule `func` (the PrimFunc of `spec`) for `target` with the first rule that takes it
    (`tunable`, `hand_decisions`, `dwc_passes`: see ``base.py``).

    Returns:
        ``(schedule, name)``, name being e.g. ``"hand:x86"`` or ``"hand:generic"``.

    Raises:
        BuildError: no rule schedules `spec` for `target`.
    """
    for rule in RULES:
        schedule = rule.apply(func, spec, target, tunable=tunable, hand_decisions=hand_decisions, dwc_passes=dwc_passes)
        if schedule is not None:
            return schedule, rule.NAME
    raise BuildError(f"target {target.name}: no schedule rule for {spec.describe()} (family {target.family})")


def aligned_variants(spec: Any, target: Any, main: Any) -> AlignedVariants:
    """The kernels of `spec` for inputs off a vector boundary on `target`, given the schedule of
    ``main`` (``by_offset``, ``{offset in bytes: (channel blocks, make)}``), from the first rule
    that has them; without any where none does."""
    for rule in RULES:
        variants = getattr(rule, "aligned_variants", None)
        found = variants(spec, target, main) if variants is not None else None
        if found is not None:
            return found
    return AlignedVariants({})
