"""The API's first lookup of a cached kernel: by the identity of the weights array it was last called with.

A model's layer passes the same filter object on every call. Finding its kernel by
``id(filter)`` reads no array's shape: each ``.shape`` of a NumPy array or a PyTorch tensor costs
~0.13 us, and hashing a key of shapes and parameters ~0.2 us more, against a compiled function
that takes ~1 us on a small layer. Leaving the shapes out is safe: the kernel's compiled function
checks every array's shape, dtype and layout itself and refuses, before touching anything,
arrays it was not built for (the caller then falls back to its lookup by shapes).
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

_PLAIN_SCALARS = (int, str, bool, type(None))


def is_plain(value: Any) -> bool:
    """Whether `value` is an int, str, bool or None, or a list or tuple of such values (nested too):
    parameters whose ``==`` is a plain True or False (a NumPy array's is an array)."""
    if type(value) in _PLAIN_SCALARS:
        return True
    return type(value) in (list, tuple) and all(is_plain(item) for item in value)


class CallsByWeights:
    """Kernel calls by the weights array they were made with, and the call's other parameters.

    Attributes:
        entries: ``id(weights) -> (weak reference to weights, parameters, call)``. An entry's call
            is None once the weights were used with more than one kernel or set of parameters
            (one filter for two input sizes, say), and its parameters None, which no call's equal:
            the caller's lookup by shapes serves those.
            Each entry goes when its weights are freed, so the weights are never kept alive here.

    Callers read `entries` inline (a method call costs ~0.1 us): an entry counts when its
    reference still gives the weights (``entry[0]() is weights``) and its parameters equal the
    call's.
    """

    def __init__(self) -> None:
        self.entries: dict[int, tuple] = {}

    def keep(self, weights: Any, parameters: tuple, call: Callable[..., Any]) -> None:
        """Keep `call` for `weights` and `parameters` (which must be plain, see :func:`is_plain`,
        else nothing is kept); a second call or set of parameters for the same weights marks
        them as shared. A NumPy view (``weights.base`` set) is not kept: a caller that slices its
        filter from a larger array makes a new view for every call, and each would cost a weak
        reference made and dropped."""
        key = id(weights)
        entry = self.entries.get(key)
        if entry is not None and entry[0]() is weights:
            if entry[2] is not None and (entry[2] is not call or entry[1] != parameters):
                self.entries[key] = (entry[0], None, None)
            return
        if not is_plain(parameters) or getattr(weights, "base", None) is not None:
            return
        entries = self.entries
        try:
            # Runs as the weights are freed, before their id can name another object.
            reference = weakref.ref(weights, lambda _, key=key: entries.pop(key, None))
        except TypeError:  # an object that cannot be weakly referenced: the lookup by shapes serves it
            return
        entries[key] = (reference, parameters, call)

    def share(self, weights: Any) -> None:
        """Mark `weights` as used with more than one kernel (its kernel refused the call's arrays)."""
        entry = self.entries.get(id(weights))
        if entry is not None and entry[0]() is weights:
            self.entries[id(weights)] = (entry[0], None, None)

    def clear(self) -> None:
        """Forget every entry."""
        self.entries.clear()
