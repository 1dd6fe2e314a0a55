"""MetaSchedule's tensor intrinsics, imported in seconds instead of a minute or more.

Every ``TuneContext`` (so every tuning search and the cost model's training) first imports
``tvm.s_tir.tensor_intrin``, which parses a few hundred TVMScript functions. TVMScript's
``T.prim_func`` calls ``inspect.stack()`` for each, and for every frame of the (deep, import
machinery) stack that looks up the frame's module by scanning ``sys.modules``: the import took
80 s on this project's 2-core machine, more than the rest of an 8-trial tuning job.

:func:`import_tensor_intrinsics` makes that import with ``inspect.stack`` answering from the
frames themselves and ``linecache`` (the same frames, files, lines, functions and source lines
that TVMScript reads: it looks at the frames' locals and one decorator line), which took 5.6 s.
"""

from __future__ import annotations

import inspect
import itertools
import linecache
import sys
import threading

_import_lock = threading.Lock()


def _line_of(frame) -> int:
    """The line of the instruction `frame` is at, as ``inspect.getframeinfo`` gives it (the start
    of the instruction's source position where Python records one, else ``f_lineno``)."""
    positions = getattr(frame.f_code, "co_positions", None)  # Python 3.11+
    if positions is not None and frame.f_lasti >= 0:
        position = next(itertools.islice(positions(), frame.f_lasti // 2, None), None)
        if position is not None and position[0] is not None:
            return position[0]
    return frame.f_lineno


def frames_from_here(context: int = 1) -> list[inspect.FrameInfo]:
    """``inspect.stack(context)`` of the caller, each frame's source lines read through
    ``linecache`` by its code's file name (no module search): the frames from the caller
    outwards, each with its file, line, function, and the `context` source lines around the
    line (None where the file has no source, as for frozen modules)."""
    frames = []
    frame = sys._getframe(1)
    while frame is not None:
        filename, lineno = frame.f_code.co_filename, _line_of(frame)
        code_context, index = None, None
        lines = linecache.getlines(filename) if context > 0 else []
        if lines:  # the lines around `lineno`, moved back from the file's end as inspect does
            start = max(0, min(lineno - 1 - context // 2, len(lines) - context))
            code_context, index = lines[start:start + context], lineno - 1 - start
        frames.append(inspect.FrameInfo(frame, filename, lineno, frame.f_code.co_name, code_context, index))
        frame = frame.f_back
    return frames


def import_tensor_intrinsics() -> None:
    """Import ``tvm.s_tir.tensor_intrin`` (once per process) with ``inspect.stack`` as
    :func:`frames_from_here` for the length of the import; see the module doc."""
    if "tvm.s_tir.tensor_intrin" in sys.modules:
        return
    with _import_lock:
        original = inspect.stack
        inspect.stack = frames_from_here
        try:
            import tvm.s_tir.tensor_intrin  # noqa: F401 (registers the intrinsics)
        finally:
            inspect.stack = original
