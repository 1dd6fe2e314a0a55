"""The ops dwc compiles, one module each: its spec (validated, in TF's terms, with the argument
list it declares and a workload key), its TE compute and its float64 reference."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidSpecError
from .depthwise import DepthwiseSpec
from .separable import SeparableSpec

# op name (as written in manifests and records) -> spec class
SPEC_TYPES = {DepthwiseSpec.op: DepthwiseSpec, SeparableSpec.op: SeparableSpec}


def spec_from_dict(data: dict[str, Any]):
    """The spec a manifest or record describes (``spec.to_dict()``), of whichever op it names.

    Raises:
        InvalidSpecError: an unknown op or a missing or invalid field.
    """
    op = data.get("op", DepthwiseSpec.op)
    if op not in SPEC_TYPES:
        raise InvalidSpecError(f"spec: unknown op {op!r}; expected one of {', '.join(SPEC_TYPES)}")
    return SPEC_TYPES[op].from_dict(data)
