"""CUDA builds on any machine, CUDA runs where a GPU is.

Building: TVM's CUDA runtime library links against the driver (``libcuda.so.1``). Where there is
none, dwc loads a stand-in (``native/libcuda_stub.c``) so that the library loads, and replaces
TVM's compile callback with one that runs nvcc for the target's architecture: the exported
module then holds a fatbin with sm_XX machine code (and PTX for newer GPUs), not CUDA source
left for the GPU host to compile.

Running: an exported module needs only TVM's runtime (``TVM_USE_RUNTIME_LIB=1``) and a GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import subprocess
import threading
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .emulation import cache_dir
from .errors import BuildError, IncompatibleModuleError, InvalidArgumentError
from .toolchain import require_tool

logger = logging.getLogger(__name__)

_build_state = threading.local()
_callback_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _driver_status() -> str:
    """Load a CUDA driver for TVM's CUDA runtime: ``"driver"``, or ``"stub"`` when none exists."""
    try:
        ctypes.CDLL("libcuda.so.1", mode=ctypes.RTLD_GLOBAL)
        return "driver"
    except OSError:
        pass
    stub = cache_dir() / "cuda-stub" / "libcuda.so.1"
    if not stub.is_file():
        source = Path(str(resources.files(__package__))) / "native" / "libcuda_stub.c"
        stub.parent.mkdir(parents=True, exist_ok=True)
        partial = stub.with_suffix(".partial")
        done = subprocess.run([require_tool("gcc"), "-shared", "-fPIC", "-O2", "-Wl,-soname,libcuda.so.1",
                               str(source), "-o", str(partial)], capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(f"could not build the CUDA driver stand-in: {done.stderr.strip()[-1000:]}")
        partial.replace(stub)
    ctypes.CDLL(str(stub), mode=ctypes.RTLD_GLOBAL)
    logger.info("no CUDA driver here: building against dwc's stand-in %s", stub)
    return "stub"


@functools.lru_cache(maxsize=1)
def ensure_cuda_runtime() -> str:
    """Make TVM's CUDA runtime available in this process.

    Returns:
        ``"driver"`` when a real CUDA driver was found, ``"stub"`` when the stand-in was used.

    Raises:
        BuildError: TVM's CUDA runtime library cannot be loaded.
    """
    import tvm
    import tvm_ffi

    status = _driver_status()
    if tvm_ffi.get_global_func("ffi.Module.load_from_bytes.cuda", allow_missing=True) is None:
        library = Path(tvm.__file__).parent / "lib" / "libtvm_runtime_cuda.so"
        try:
            ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            raise BuildError(f"TVM's CUDA runtime ({library.name}) cannot be loaded: {exc}") from exc
    _install_compile_callback()
    return status


def _install_compile_callback() -> None:
    import tvm_ffi

    def compile_with_nvcc(code: str) -> bytes:
        from tvm.support import nvcc

        target = getattr(_build_state, "target", None)
        if target is None:
            raise BuildError("internal: CUDA code compiled outside dwc's build (no target set)")
        require_tool("nvcc")
        sm = int(target.extra["sm"])
        arch = ["-gencode", f"arch=compute_{sm},code=sm_{sm}", "-gencode", f"arch=compute_{sm},code=compute_{sm}"]
        with target.tvm():  # nvcc's wrapper reads the compute version from the current target
            return nvcc.compile_cuda(code, target_format="fatbin", arch=arch, compiler="nvcc")

    tvm_ffi.register_global_func("tvm_callback_cuda_compile", compile_with_nvcc, override=True)


@contextlib.contextmanager
def building_for(target) -> Iterator[None]:
    """Within the block, TVM's CUDA code generation compiles with nvcc for `target`'s sm."""
    ensure_cuda_runtime()
    with _callback_lock:
        _build_state.target = target
        try:
            yield
        finally:
            _build_state.target = None


def gpu_present() -> bool:
    """True when a CUDA GPU can run kernels here."""
    try:
        if ensure_cuda_runtime() != "driver":
            return False
        import tvm

        return bool(tvm.cuda(0).exist)
    except Exception:  # no runtime, no device: no GPU
        return False


def kernel_from_executable(spec, target, schedule_name: str, executable):
    """A Kernel for a CUDA build: runnable where a GPU is, exportable everywhere."""
    from .kernel import Kernel

    module = executable.jit() if gpu_present() else None
    caller = CudaCaller(module["main"], spec) if module is not None else _no_gpu_runner(target)
    return Kernel(spec, target, schedule_name, module=module, executable=executable, device_caller=caller)


def _no_gpu_runner(target):
    def refuse(*_: Any) -> None:
        raise IncompatibleModuleError(
            f"module: built for {target.name}, which needs an NVIDIA GPU; none is present here "
            "(export it and run it on a GPU machine)")

    return refuse


def load_cuda_module(library: Path, target):
    """Load an exported CUDA module (with TVM's runtime alone), refusing where no GPU is."""
    import tvm

    ensure_cuda_runtime()
    if not gpu_present():
        raise IncompatibleModuleError(
            f"module: {library.name} was built for {target.name} and needs an NVIDIA GPU; none is present here")
    return tvm.runtime.load_module(str(library))


class CudaCaller:
    """Calls a CUDA kernel: NumPy arrays are copied to the GPU and back; GPU tensors are used in place."""

    def __init__(self, function, spec) -> None:
        self._function = function
        self._spec = spec

    def __call__(self, data: Any, weights: Any, out: Any = None) -> Any:
        import tvm

        device = tvm.cuda(0)
        host_inputs = isinstance(data, np.ndarray)
        if host_inputs != isinstance(weights, np.ndarray):
            raise InvalidArgumentError("filter: pass input and filter both as NumPy arrays or both as GPU tensors")
        if host_inputs:
            data = tvm.runtime.tensor(np.ascontiguousarray(data), device)
            weights = tvm.runtime.tensor(np.ascontiguousarray(weights), device)
        result = out if out is not None else tvm.runtime.empty(self._spec.output_shape, self._spec.dtype, device)
        self._function(data, weights, result)
        if host_inputs and out is None:
            return result.numpy()
        return result
