"""How many threads TVM's runtime uses for dwc's kernels.

TVM sizes its thread pool from ``TVM_NUM_THREADS`` when its runtime loads. Left unset on a
2-vCPU machine here, every parallel launch cost ~7.5 us (a tiny parallel kernel took 7.7 us
against 0.2 us with ``TVM_NUM_THREADS=2`` set): as long as a whole MobileNet layer. dwc therefore
sets it to the cores this process may use, before TVM is imported, unless the user already did.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

from .errors import InvalidArgumentError

_current_threads: int | None = None


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return max(os.cpu_count() or 1, 1)


def configure_default_threads() -> None:
    """Set ``TVM_NUM_THREADS`` to the usable cores unless it is set already (before TVM loads)."""
    os.environ.setdefault("TVM_NUM_THREADS", str(usable_cores()))


def max_threads() -> int:
    """The size of TVM's thread pool for this process."""
    try:
        return max(int(os.environ.get("TVM_NUM_THREADS", "")), 1)
    except ValueError:
        return usable_cores()


def set_num_threads(threads: int) -> None:
    """Run dwc's CPU kernels on `threads` threads (1 to the pool's size) from now on.

    Raises:
        InvalidArgumentError: `threads` is not between 1 and :func:`max_threads`.
    """
    global _current_threads
    import tvm  # registers the runtime's functions (the runtime alone is enough)
    import tvm_ffi

    limit = max_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= limit:
        raise InvalidArgumentError(f"threads: expected an integer from 1 to {limit}, got {threads!r}")
    tvm_ffi.get_global_func("runtime.config_threadpool")(1, threads)
    _current_threads = threads


def get_num_threads() -> int:
    """The threads dwc's CPU kernels run on."""
    return _current_threads or max_threads()


def threads_at_most(limit: int) -> bool:
    """Whether dwc's CPU kernels run on at most `limit` threads (cheap: the lean call asks on
    every call of a kernel whose functions for inputs off a vector boundary serve calls on up to
    so many threads)."""
    return (_current_threads if _current_threads is not None else _pool_size()) <= limit


@functools.cache
def _pool_size() -> int:
    # TVM sizes its pool once, when its runtime loads: reading the environment on every call
    # would cost a few tenths of a microsecond on the lean call's path.
    return max_threads()


@contextlib.contextmanager
def num_threads(threads: int) -> Iterator[None]:
    """Within the block, run dwc's CPU kernels on `threads` threads."""
    previous = get_num_threads()
    set_num_threads(threads)
    try:
        yield
    finally:
        set_num_threads(previous)
