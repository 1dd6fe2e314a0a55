"""Compiling with TVM and linking exported modules, with the system tools each target needs."""

from __future__ import annotations

import shutil
from pathlib import Path

from .errors import BuildError, MissingToolError

# Debian packages that provide each tool dwc may call, for the error message.
TOOL_PACKAGES = {
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
    "aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu",
    "qemu-aarch64": "qemu-user",
    "nvcc": "nvidia-cuda-toolkit (or NVIDIA's CUDA toolkit)",
    "gcc": "gcc",
}


def require_tool(name: str) -> str:
    """The path of the program `name`, or a MissingToolError naming the package to install."""
    path = shutil.which(name)
    if path is None:
        package = TOOL_PACKAGES.get(name, name)
        raise MissingToolError(f"{name} is not installed; install it with: apt-get install {package}")
    return path


def compile_module(mod, target):
    """``tvm.compile`` of the scheduled IRModule `mod` for `target` (a TargetInfo).

    Raises:
        BuildError: carrying TVM's first line of complaint.
    """
    import tvm

    try:
        with tvm.transform.PassContext(opt_level=3):
            return tvm.compile(mod, target=target.tvm())
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise BuildError(f"TVM could not compile for {target.name}: {first_line}") from exc


def export_library(executable, destination: Path, target) -> None:
    """Link `executable` into the shared library `destination` with `target`'s toolchain."""
    import tvm.support.cc

    options = {}
    if target.cross_compiler:
        require_tool(target.cross_compiler)
        options["fcompile"] = tvm.support.cc.cross_compiler(target.cross_compiler)
    else:
        require_tool("gcc")
    try:
        executable.export_library(str(destination), **options)
    except Exception as exc:
        raise BuildError(f"could not link the module for {target.name}: {str(exc).strip().splitlines()[-1]}") from exc
