"""``Kernel.call``: a function written for the kernel's own argument list.

A small layer's compiled function takes ~1 us with NumPy arrays, so every 0.1 us of Python
around it shows. A function with the kernel's parameters, ``call(input, filter, out=None)``,
costs ~0.2 us less than one of ``*inputs``: it neither packs the arguments into a tuple nor
unpacks them again for the compiled function. So the lean call is made from one template with
the kernel's argument names filled in (as ``dataclasses`` writes its methods): ``call``, and
``call_exact(input, filter)`` for callers that always pass exactly the kernel's arrays (the API),
which CPython calls faster still (no ``*extra``, no keyword-only ``out``). Each picks its
compiled function in one of two forms:

- ``main`` for every input;
- for kernels with functions for inputs off a vector boundary, the one for the input's address
  modulo the vector's size (``main`` for the others; where those functions are for one thread
  only, ``main`` for every input on more).

Either hands TVM's compiled function the arrays as given, and an output from the kernel's
:class:`~dwc_compiler.runtime.outputs.OutputBuffers` (at the input's offset, so that its stores
are aligned too), whose kept entries it tests inline before it calls ``take``. When the
function refuses an argument (a dtype, shape or layout it does not take), or the arguments are
too few or too many, the kernel's checked path copies what can be copied or names what is wrong.
"""

from __future__ import annotations

import keyword
import sys
import textwrap
from typing import Any, Callable

import numpy as np

from ..threads import threads_at_most
from .outputs import OutputBuffers

# What TVM's compiled function raises for an argument it refuses (dtype, shape, strides, device:
# TypeError or ValueError; an array DLPack cannot export, read-only or byte-swapped: BufferError;
# a tensor PyTorch cannot pack, such as one on the meta device: RuntimeError).
REFUSALS = (TypeError, ValueError, BufferError, RuntimeError)

# The default of every parameter: a call with too few arrays reaches the checked path, which
# names the first argument left MISSING.
MISSING = object()

# The lean call: `body` under the test that the arguments are the kernel's, else the checked path.
_TEMPLATE = """
def call({parameters}, *extra, out=None):
    if {last} is not MISSING and not extra:
{body}
    return checked(({names}, *extra), out)
"""

# The exact call: the kernel's arguments, positionally, and no `out`. CPython specializes calls of
# a function without `*extra` or keyword-only parameters, ~30 ns less a call.
_EXACT_TEMPLATE = """
def call({names}):
{body}
    return checked(({names},), None)
"""

# The body: the compiled function for the input (`pick`), an output, and the run; on a refusal
# it falls through to the checked path.
_BODY = """\
{pick}
{output}
try:
    run(first{rest}, argument)
    return result
except REFUSALS:
    result = argument = None  # no longer held here: the checked path may hand it out again"""

# A free output at the input's offset: take's first loop inline (a call of take costs ~0.1 us).
_TAKE = """\
for entry in kept:
    if entry[3] == offset:
        result = entry[0]
        if refcount(result) == entry[5] and refcount(entry[2]) == entry[4]:
            argument = entry[1]
            break
        result = None
else:
    result, argument = take(offset)"""

_MAIN = """\
run, offset, first = invoke, 0, {name}"""

# The input's address: data_ptr() of PyTorch's (and TVM's) tensors; a NumPy array goes to TVM as
# the DLPack tensor its address is read from, the conversion the compiled function would make
# (made from the array's capsule: from_dlpack's probing of the array itself costs ~0.2 us more).
_BY_OFFSET = """\
first = {name}
try:
    if type(first) is ndarray:
        first = from_dlpack(first.__dlpack__())
    offset = first.data_ptr() % vector_bytes
except ADDRESS_REFUSALS:  # AttributeError: a tensor without data_ptr()
    return checked(({names},), {out})
run = by_offset.get(offset)
if run is None and offset in names_by_offset:  # its first use in this process
    run = function_for(offset)
if run is None:  # on a vector boundary, or at an offset without a function of its own
    run, offset = invoke, 0"""


# Every call is checked (kernels whose invoke does not check its arguments itself).
_CHECKED_TEMPLATE = """
def call({parameters}, *extra, out=None):
    return checked(({names}, *extra), out)
"""
_CHECKED_EXACT_TEMPLATE = """
def call({names}):
    return checked(({names},), None)
"""

# Names the templates use themselves: an argument of one of these names becomes a positional
# parameter of another name.
_RESERVED = frozenset({
    "call", "extra", "out", "MISSING", "REFUSALS", "ADDRESS_REFUSALS", "invoke", "take", "checked", "ndarray",
    "by_offset", "names_by_offset", "vector_bytes", "function_for", "from_dlpack", "run", "offset", "first",
    "result", "argument", "threads_at_most", "max_threads", "kept", "entry", "refcount"})


def _parameters(names: list[str]) -> list[str]:
    """The parameter names of a lean call: the argument names, where they are usable as such."""
    return [name if name.isidentifier() and not keyword.iskeyword(name) and name not in _RESERVED
            and not name.startswith("_array") else f"_array{index}" for index, name in enumerate(names)]


def _function(source: str, scope: dict[str, Any], parameters: list[str]) -> Callable[..., Any]:
    """The function ``call`` that `source` defines, with `scope` as its globals."""
    exec(compile(source, f"<dwc lean call of ({', '.join(parameters)})>", "exec"), scope)  # noqa: S102 (our template)
    return scope["call"]


def make_checked_call(names: list[str], checked: Callable[[tuple, Any], Any]) -> tuple[Callable[..., Any], ...]:
    """``Kernel.call`` and ``Kernel.call_exact`` of a kernel whose calls are all checked in Python
    (emulated and CUDA runtimes): the parameters of :func:`make_lean_call`'s, each call to `checked`."""
    parameters = _parameters(names)
    joined = ", ".join(parameters)
    general = _CHECKED_TEMPLATE.format(parameters=", ".join(f"{name}=MISSING" for name in parameters), names=joined)
    scope = {"MISSING": MISSING, "checked": checked}
    return (_function(general, dict(scope), parameters),
            _function(_CHECKED_EXACT_TEMPLATE.format(names=joined), scope, parameters))


def make_lean_call(names: list[str], invoke: Callable[..., Any], outputs: OutputBuffers,
                   checked: Callable[[tuple, Any], Any], by_offset: dict[int, Callable[..., Any]] | None = None,
                   names_by_offset: dict[int, str] | None = None, vector_bytes: int = 0,
                   function_for: Callable[[int], Any] | None = None,
                   max_threads: int | None = None) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The lean calls of a kernel whose input arguments are `names` (in order): ``call(input,
    filter, out=None)``, which names missing or extra arguments, and ``call_exact(input,
    filter)``, for callers that always pass exactly the kernel's arguments (``depthwise_conv2d``).

    Args:
        names: the spec's input argument names (``["input", "filter"]``): the parameters.
        invoke: the compiled ``main``.
        outputs: the kernel's output buffers (their free entries tested inline, then `take`).
        checked: the kernel's checked call, ``checked(inputs, out)`` (`inputs` may hold
            ``MISSING`` for arguments not given).
        by_offset: for kernels with functions for inputs off a vector boundary, those made
            callable so far by the input's offset (None: ``main`` only).
        names_by_offset: the offsets that have a function (the keys it will have).
        vector_bytes: the vector's size, the modulus of the input's address.
        function_for: compiles (or finds) the function for an offset on its first use.
        max_threads: those functions serve calls on up to so many threads (None: any number).
    """
    parameters = _parameters(names)
    joined = ", ".join(parameters)

    def body(out: str) -> str:
        """The body at no indentation; `out` names the output argument (``None``: none)."""
        pick = (_MAIN if by_offset is None else _BY_OFFSET).format(name=parameters[0], names=joined, out=out)
        if by_offset is not None and max_threads is not None:  # on more threads, main (an aligned output) for all
            pick = (f"if not threads_at_most(max_threads):\n{textwrap.indent(_MAIN.format(name=parameters[0]), '    ')}"
                    f"\nelse:\n{textwrap.indent(pick, '    ')}")
        output = _TAKE if out == "None" else (f"if out is None:\n{textwrap.indent(_TAKE, '    ')}\n"
                                              "else:\n    result = argument = out")
        return _BODY.format(pick=pick, output=output, rest="".join(f", {name}" for name in parameters[1:]))

    general = _TEMPLATE.format(parameters=", ".join(f"{name}=MISSING" for name in parameters), last=parameters[-1],
                               body=textwrap.indent(body("out"), " " * 8), names=joined)
    exact = _EXACT_TEMPLATE.format(names=joined, body=textwrap.indent(body("None"), " " * 4))
    scope: dict[str, Any] = {
        "MISSING": MISSING, "REFUSALS": REFUSALS, "ADDRESS_REFUSALS": (*REFUSALS, AttributeError),
        "invoke": invoke, "take": outputs.take, "kept": outputs.kept,
        "refcount": sys.getrefcount, "checked": checked, "ndarray": np.ndarray,
        "by_offset": by_offset, "names_by_offset": names_by_offset, "vector_bytes": vector_bytes,
        "function_for": function_for, "threads_at_most": threads_at_most, "max_threads": max_threads}
    if by_offset is not None:
        import tvm_ffi

        scope["from_dlpack"] = tvm_ffi.from_dlpack
    return _function(general, dict(scope), parameters), _function(exact, scope, parameters)
