"""What every runtime does the same way; each runtime module overrides what differs for its kind.

A runtime turns ``tvm.compile``'s output into a callable :class:`~.kernel.Loaded` (``instantiate``),
loads an exported library back (``load``), links a library for export (``write_library``) and
times a kernel (``benchmark``). ``runtime_for`` in this package picks the runtime of a target.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..toolchain import compile_module, export_library
from .kernel import AlignedEntries, BenchmarkResult, Kernel, Loaded, time_whole_calls


class Runtime:
    """The shared behaviour: compile with TVM, link with the target's toolchain, time whole calls."""

    name = "base"

    def compile(self, mod: Any, target: Any) -> Any:
        """``tvm.compile`` of the scheduled IRModule `mod` for `target`."""
        return compile_module(mod, target)

    def instantiate(self, spec: Any, target: Any, executable: Any) -> Loaded:
        """`executable` (its ``main``) made callable here."""
        raise NotImplementedError

    def load(self, library: Path, spec: Any, target: Any, aligned: AlignedEntries | None = None) -> Loaded:
        """The exported `library` made callable here, with the functions for inputs off a vector
        boundary that `aligned` names where the runtime has such kernels (CPUs that run here)."""
        raise NotImplementedError

    def write_library(self, loaded: Loaded, target: Any, destination: Path) -> None:
        """Write the shared library of `loaded` to `destination`: a copy of the one it was loaded
        from, or `executable` linked with `target`'s toolchain."""
        if loaded.library_path is not None:
            shutil.copyfile(loaded.library_path, destination)
        else:
            export_library(loaded.executable, destination, target)

    def benchmark(self, kernel: Kernel, repeats: int, warmup: int, min_time_s: float, seed: int) -> BenchmarkResult:
        """Whole calls on random data (see :func:`~.kernel.time_whole_calls`)."""
        return time_whole_calls(kernel, repeats, warmup, min_time_s, seed)
