"""TVM's CUDA runtime made loadable on any machine, and whether a GPU is here.

TVM's CUDA runtime library links against the driver (``libcuda.so.1``). Where there is none,
dwc loads a stand-in (``native/libcuda_stub.c``, whose functions all answer "no device") so
that the library loads and CUDA modules can still be compiled and exported here.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import subprocess
from importlib import resources
from pathlib import Path

from .errors import BuildError
from .files import cache_dir
from .toolchain import require_tool

logger = logging.getLogger(__name__)


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
    return status


def gpu_present() -> bool:
    """True when a CUDA GPU can run kernels here."""
    try:
        if ensure_cuda_runtime() != "driver":
            return False
    except BuildError:  # no CUDA runtime: no GPU
        return False
    import tvm

    return bool(tvm.cuda(0).exist)
