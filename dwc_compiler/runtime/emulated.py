"""Running kernels for a foreign CPU (aarch64 on an x86 host) under qemu-user.

An aarch64 module cannot be loaded into this (x86) process. dwc runs it in a small C++ runner
(``native/aarch64_runner.cc``) cross-compiled for aarch64 against the TVM runtime libraries of
the aarch64 ``apache-tvm`` wheels, under ``qemu-aarch64``; ``native/aarch64_rpc_server.cc``
serves TVM RPC sessions the same way (see ``rpc_qemu``). The runner takes any number of arrays
(the op's argument list), the output last. The runtime libraries and the programs
are prepared once per TVM version in dwc's cache directory (``$DWC_CACHE``, else
``~/.cache/dwc``): the wheels are fetched with pip, the runner built with
``aarch64-linux-gnu-g++``.
"""

from __future__ import annotations

import atexit
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DwcError, MissingToolError
from ..files import cache_dir, sha256_of
from ..toolchain import export_library, require_tool
from .base import Runtime
from .kernel import Loaded

logger = logging.getLogger(__name__)

AARCH64_SYSROOT = Path("/usr/aarch64-linux-gnu")
RUNTIME_LIBRARIES = {"tvm/lib/libtvm_runtime.so": "libtvm_runtime.so",
                     "tvm_ffi/lib/libtvm_ffi.so": "libtvm_ffi.so"}
RUNNER_NAME = "dwc-aarch64-runner"
RPC_SERVER_NAME = "dwc-aarch64-rpc-server"
# The programs built for aarch64: name -> source in native/.
PROGRAMS = {RUNNER_NAME: "aarch64_runner.cc", RPC_SERVER_NAME: "aarch64_rpc_server.cc"}
RUN_TIMEOUT_S = 600


class EmulationError(DwcError):
    """A module failed to run under qemu-user."""


def _runtime_dir() -> Path:
    import tvm
    import tvm_ffi

    return cache_dir() / f"aarch64-runtime-tvm{tvm.__version__}-ffi{tvm_ffi.__version__}"


def _fetch_runtime_libraries(destination: Path) -> None:
    import tvm
    import tvm_ffi

    with tempfile.TemporaryDirectory(prefix="dwc-wheels-") as download:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--implementation", "cp", "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}",
                   "--platform", "manylinux_2_28_aarch64", "-d", download,
                   f"apache-tvm=={tvm.__version__}", f"apache-tvm-ffi=={tvm_ffi.__version__}"]
        logger.warning("fetching the aarch64 TVM runtime (once): %s", " ".join(command[2:]))
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise MissingToolError(
                "the aarch64 TVM runtime is not installed and could not be downloaded "
                f"(pip said: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}); "
                "run scripts/install-test-deps.sh on a machine with access to PyPI")
        for wheel in Path(download).glob("*.whl"):
            with zipfile.ZipFile(wheel) as archive:
                for member, name in RUNTIME_LIBRARIES.items():
                    if member in archive.namelist():
                        (destination / name).write_bytes(archive.read(member))


def _program_source(name: str) -> Path:
    return Path(str(resources.files("dwc_compiler"))) / "native" / PROGRAMS[name]


def program_file_name(name: str) -> str:
    """The installed file name of the aarch64 program `name`: it carries a hash of its source,
    so that a changed source is built again rather than an old build used."""
    return f"{name}-{sha256_of(_program_source(name))[:12]}"


def _build_program(destination: Path, name: str) -> None:
    import tvm_ffi.libinfo

    compiler = require_tool("aarch64-linux-gnu-g++")
    source = _program_source(name)
    output = destination / f".{name}.partial"
    command = [compiler, "-O2", "-std=c++17", str(source), "-o", str(output),
               f"-I{tvm_ffi.libinfo.find_include_path()}", f"-I{tvm_ffi.libinfo.find_dlpack_include_path()}",
               f"-L{destination}", "-ltvm_ffi", "-ldl", "-Wl,-rpath,$ORIGIN"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise EmulationError(f"could not build {name} for aarch64: {done.stderr.strip()[-2000:]}")
    os.replace(output, destination / program_file_name(name))


def ensure_aarch64_runtime() -> Path:
    """The directory holding the aarch64 TVM runtime and dwc's programs, prepared if needed.

    Raises:
        MissingToolError: qemu-user, the aarch64 cross toolchain or sysroot is not installed,
            or the runtime wheels cannot be fetched.
    """
    from filelock import FileLock

    require_tool("qemu-aarch64")
    if not (AARCH64_SYSROOT / "lib").is_dir():
        raise MissingToolError("the aarch64 C library is not installed; install it with: "
                               "apt-get install libc6-dev-arm64-cross")
    directory = _runtime_dir()
    wanted = [directory / name for name in (*RUNTIME_LIBRARIES.values(), *map(program_file_name, PROGRAMS))]
    if all(path.is_file() for path in wanted):
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory / ".lock")):
        if not all((directory / name).is_file() for name in RUNTIME_LIBRARIES.values()):
            _fetch_runtime_libraries(directory)
        for name in PROGRAMS:
            if not (directory / program_file_name(name)).is_file():
                _build_program(directory, name)
    return directory


def qemu_command(target, runtime: Path) -> list[str]:
    """The qemu-user command line prefix that runs an aarch64 program for `target`."""
    command = [require_tool("qemu-aarch64"), "-L", str(AARCH64_SYSROOT), "-E", f"LD_LIBRARY_PATH={runtime}"]
    if target.qemu_cpu:
        command += ["-cpu", target.qemu_cpu]
    return command


def _tensor_args(path: Path, array_shape: tuple[int, ...], dtype: np.dtype) -> list[str]:
    return [str(path), str(dtype.itemsize * 8), str(len(array_shape)), *(str(size) for size in array_shape)]


def run_emulated(library: Path, target, arrays: list[np.ndarray], repeats: int = 1) -> list[float]:
    """Run `library`'s main under qemu on `arrays` (every argument, the output last, which is written).

    Returns:
        The time of each call inside the emulated process, in microseconds.

    Raises:
        EmulationError: the runner failed (its message is included).
    """
    if target.arch != "aarch64":
        raise EmulationError(f"target {target.name}: no emulator for {target.arch} on {platform.machine()}")
    runtime = ensure_aarch64_runtime()
    *inputs, out = arrays
    with tempfile.TemporaryDirectory(prefix="dwc-qemu-") as work:
        paths = [Path(work) / f"argument{index}.bin" for index in range(len(arrays))]
        for path, array in zip(paths, inputs):
            array.tofile(path)
        command = qemu_command(target, runtime) + [str(runtime / program_file_name(RUNNER_NAME)), str(library), str(repeats),
                                                   str(len(arrays))]
        for path, array in zip(paths, arrays):
            command += _tensor_args(path, array.shape, array.dtype)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise EmulationError(f"{library.name} did not finish under qemu within {RUN_TIMEOUT_S} s") from exc
        if done.returncode != 0:
            raise EmulationError(f"{library.name} failed under qemu (exit {done.returncode}): "
                                 f"{(done.stderr or done.stdout).strip()[-2000:]}")
        out[...] = np.fromfile(paths[-1], dtype=out.dtype).reshape(out.shape)
    return [float(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("call_us ")]


_libraries_dir: Path | None = None


def _library_dir() -> Path:
    """A directory for this process's emulated libraries, removed when the process exits."""
    global _libraries_dir
    if _libraries_dir is None:
        _libraries_dir = Path(tempfile.mkdtemp(prefix="dwc-emulated-"))
        atexit.register(shutil.rmtree, _libraries_dir, True)
    return _libraries_dir


class EmulatedRuntime(Runtime):
    """Modules for a foreign CPU (aarch64 on x86): linked with the cross compiler and run, one
    process per call, under qemu-user."""

    name = "emulated"

    def instantiate(self, spec: Any, target: Any, executable: Any) -> Loaded:
        """`executable` linked into a library of this process's and run under qemu (one entry,
        ``main``: NEON vectors are 16 bytes, which every NumPy array is aligned to)."""
        library = _library_dir() / f"{spec.workload_key}-{target.name}.so"
        export_library(executable, library, target)
        return self._loaded(library, target, executable)

    def load(self, library: Path, spec: Any, target: Any, aligned: Any = None) -> Loaded:
        """The exported `library`, run under qemu (``main`` only, as built)."""
        return self._loaded(library, target, None)

    @staticmethod
    def _loaded(library: Path, target: Any, executable: Any) -> Loaded:
        ensure_aarch64_runtime()

        def invoke(*arrays: np.ndarray) -> None:
            run_emulated(library, target, list(arrays))

        return Loaded(invoke=invoke, executable=executable, library_path=library)

    def benchmark(self, kernel, repeats: int, warmup: int, min_time_s: float, seed: int):
        """Whole calls under qemu (process start included): they check the path, not the speed."""
        return super().benchmark(kernel, repeats=min(repeats, 2), warmup=0, min_time_s=0, seed=seed)
