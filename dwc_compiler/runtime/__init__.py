"""Running compiled kernels: one runtime per kind of target, chosen here and nowhere else.

- ``native``: this machine's CPU (the module runs in this process);
- ``emulated``: a foreign CPU (aarch64 on x86), run under qemu-user;
- ``cuda``: NVIDIA GPUs (built anywhere, run where a GPU is).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import IncompatibleModuleError
from .base import Runtime
from .cuda import CudaRuntime
from .emulated import EmulatedRuntime
from .kernel import AlignedEntries, BenchmarkResult, Kernel, Loaded
from .manifest import read_module
from .native import NativeRuntime

_RUNTIMES = {"native": NativeRuntime(), "emulated": EmulatedRuntime(), "cuda": CudaRuntime()}


def runtime_for(target: Any) -> Runtime:
    """The runtime of `target`: CUDA for GPU targets, native for this CPU's architecture,
    emulated for any other CPU."""
    if target.family == "cuda":
        return _RUNTIMES["cuda"]
    return _RUNTIMES["native" if target.runs_natively else "emulated"]


def load(path: str | Path, expected_spec: Any = None) -> Kernel:
    """The :class:`Kernel` exported at `path`.

    Args:
        path: the shared library written by ``dwc build`` or ``Kernel.export``.
        expected_spec: if given, refuse a module built for any other spec.

    Raises:
        IncompatibleModuleError: the manifest is missing or unreadable; the module was built
            by another TVM version, for another spec, for a CPU feature or architecture this
            machine lacks, or a GPU where none is; or the library changed since it was exported.
    """
    library = Path(path).expanduser().resolve()
    spec, target, manifest = read_module(library, expected_spec)
    runtime = runtime_for(target)
    try:
        aligned = AlignedEntries.from_dict(manifest.get("aligned_entries"))
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise IncompatibleModuleError(f"module: the manifest of {library.name} is damaged (aligned_entries: "
                                      f"{exc!r})") from exc
    return Kernel(spec, target, manifest.get("schedule", "?"), runtime, runtime.load(library, spec, target, aligned),
                  record=manifest.get("record"))


__all__ = ["AlignedEntries", "BenchmarkResult", "Kernel", "Loaded", "Runtime", "load", "runtime_for"]
