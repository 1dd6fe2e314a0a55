"""CUDA kernels: built on any machine, run where a GPU is.

Building: TVM's compile callback is replaced by one that runs nvcc for the target's
architecture, so an exported module holds a fatbin with sm_XX machine code (and PTX for newer
GPUs), not CUDA source left for the GPU host to compile. Without a driver, ``cuda_driver``
loads a stand-in so that TVM's CUDA runtime library loads at all.

Running: an exported module needs only TVM's runtime (``TVM_USE_RUNTIME_LIB=1``) and a GPU.
NumPy arrays are copied to the GPU and back; GPU tensors are used in place.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..cuda_driver import ensure_cuda_runtime, gpu_present
from ..errors import BuildError, IncompatibleModuleError, InvalidArgumentError
from ..ops.signature import Argument
from ..toolchain import require_tool
from .arrays import random_arguments
from .base import Runtime
from .kernel import BenchmarkResult, Loaded

_build_state = threading.local()
_callback_lock = threading.Lock()


_CALLBACK = "tvm_callback_cuda_compile"


def _compile_with_nvcc(code: str) -> bytes:
    """TVM's CUDA compile hook during dwc's builds: nvcc, sm_XX machine code plus PTX."""
    from tvm.support import nvcc

    target = getattr(_build_state, "target", None)
    if target is None:
        raise BuildError("internal: dwc's CUDA compile hook called outside dwc's build (no target set)")
    require_tool("nvcc")
    sm = int(target.extra["sm"])
    arch = ["-gencode", f"arch=compute_{sm},code=sm_{sm}", "-gencode", f"arch=compute_{sm},code=compute_{sm}"]
    with target.tvm():  # nvcc's wrapper reads the compute version from the current target
        return nvcc.compile_cuda(code, target_format="fatbin", arch=arch, compiler="nvcc")


@contextlib.contextmanager
def building_for(target: Any) -> Iterator[None]:
    """Within the block, TVM's CUDA code generation compiles with nvcc for `target`'s sm.

    The hook is TVM's process-wide ``tvm_callback_cuda_compile``: dwc puts its own in place for
    the block only and then restores what was there (or nothing), so that other CUDA builds in
    the process (``tvm.compile`` of a whole model) go TVM's own way."""
    import tvm_ffi

    ensure_cuda_runtime()
    with _callback_lock:
        previous = tvm_ffi.get_global_func(_CALLBACK, allow_missing=True)
        import tvm.support.nvcc  # noqa: F401  (registers TVM's own hook the first time it loads)

        tvm_ffi.register_global_func(_CALLBACK, _compile_with_nvcc, override=True)
        _build_state.target = target
        try:
            yield
        finally:
            _build_state.target = None
            if previous is None:
                tvm_ffi.remove_global_func(_CALLBACK)
            else:
                tvm_ffi.register_global_func(_CALLBACK, previous, override=True)


class CudaCaller:
    """Calls a CUDA kernel on the op's inputs: NumPy arrays are copied to the GPU and the output
    back; GPU tensors are used in place (and a GPU tensor is returned)."""

    def __init__(self, function: Any, output: Argument) -> None:
        self._function = function
        self._output = output

    def __call__(self, *inputs: Any, out: Any = None) -> Any:
        import tvm

        device = tvm.cuda(0)
        host_inputs = [isinstance(value, np.ndarray) for value in inputs]
        if any(host_inputs) and not all(host_inputs):
            raise InvalidArgumentError("input: pass every array as a NumPy array, or every one as a GPU tensor")
        if all(host_inputs):
            inputs = tuple(tvm.runtime.tensor(np.ascontiguousarray(value), device) for value in inputs)
        result = out if out is not None else tvm.runtime.empty(self._output.shape, self._output.dtype, device)
        self._function(*inputs, result)
        if all(host_inputs) and out is None:
            return result.numpy()
        return result


def _refuse_without_gpu(target: Any):
    def refuse(*_: Any, **__: Any) -> None:
        raise IncompatibleModuleError(
            f"module: built for {target.name}, which needs an NVIDIA GPU; none is present here "
            "(export it and run it on a GPU machine)")

    return refuse


class CudaRuntime(Runtime):
    """CUDA targets: nvcc at build time, device memory and device timing at run time."""

    name = "cuda"

    def compile(self, mod: Any, target: Any) -> Any:
        """``tvm.compile`` with nvcc producing `target`'s machine code."""
        with building_for(target):
            return super().compile(mod, target)

    def instantiate(self, spec: Any, target: Any, executable: Any) -> Loaded:
        """Runnable where a GPU is; exportable everywhere (one entry, ``main``: device memory
        is allocated aligned)."""
        if not gpu_present():
            return Loaded(invoke=_refuse_without_gpu(target), host_arrays=False, executable=executable)
        module = executable.jit()
        return Loaded(invoke=CudaCaller(module["main"], spec.arguments[-1]), host_arrays=False,
                      executable=executable, module=module)

    def load(self, library: Path, spec: Any, target: Any, aligned: Any = None) -> Loaded:
        """Load an exported CUDA module (with TVM's runtime alone), refusing where no GPU is
        (``main`` only, as built)."""
        import tvm

        ensure_cuda_runtime()
        if not gpu_present():
            raise IncompatibleModuleError(
                f"module: {library.name} was built for {target.name} and needs an NVIDIA GPU; none is present here")
        module = tvm.runtime.load_module(str(library))
        return Loaded(invoke=CudaCaller(module["main"], spec.arguments[-1]), host_arrays=False,
                      library_path=library, module=module)

    def benchmark(self, kernel, repeats: int, warmup: int, min_time_s: float, seed: int) -> BenchmarkResult:
        """The kernel alone on device tensors, with TVM's time evaluator (device events)."""
        import tvm

        if kernel.loaded.module is None:
            kernel.loaded.invoke()  # raises: no GPU here
        device = tvm.cuda(0)
        arguments = kernel.spec.arguments
        inputs = [tvm.runtime.tensor(array, device) for array in random_arguments(arguments, seed, aligned=False)]
        out = tvm.runtime.empty(arguments[-1].shape, arguments[-1].dtype, device)
        evaluator = kernel.loaded.module.time_evaluator("main", device, number=20, repeat=repeats, min_repeat_ms=1)
        samples = [seconds * 1e6 for seconds in evaluator(*inputs, out).results]
        return BenchmarkResult.of(samples, kernel.spec)
