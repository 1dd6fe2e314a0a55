"""Compiling with TVM and linking exported modules, with the system tools each target needs."""

from __future__ import annotations

import shutil
from pathlib import Path

from .errors import BuildError, MissingToolError
from .tir_passes import register_cpu_pipeline

# Debian packages that provide each tool dwc may call, for the error message.
TOOL_PACKAGES = {
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
    "aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu",
    "qemu-aarch64": "qemu-user",
    "nvcc": "nvidia-cuda-toolkit (or NVIDIA's CUDA toolkit)",
    "gcc": "gcc",
}

# CPU kernels split loops at the padding: TVM's LoopPartition gives the iterations whose
# windows lie inside the input loops of their own, free of the bounds tests (each test is a
# separate `likely` in ops/depthwise.py, which is what the pass can split on).
CPU_PASS_CONFIG = {"s_tir.LoopPartition": {"partition_const_loop": True}}


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
    try:
        return compile_for(mod, target.tvm(), target.family == "cuda")
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise BuildError(f"TVM could not compile for {target.name}: {first_line}") from exc


def compile_for(mod, tvm_target, gpu: bool):
    """``tvm.compile`` of `mod` for `tvm_target`, CPU kernels with ``CPU_PASS_CONFIG`` (the
    builds and the tuner's builder alike); TVM's exception when it fails."""
    import tvm

    configs = [{}] if gpu else [CPU_PASS_CONFIG, {}]
    pipeline = "default" if gpu else register_cpu_pipeline()
    for attempt, config in enumerate(configs, start=1):
        try:
            with tvm.transform.PassContext(opt_level=3, config=config):
                return tvm.compile(mod, target=tvm_target, tir_pipeline=pipeline)
        except Exception as exc:
            if attempt == len(configs) or not _is_partition_failure(exc):
                raise
    raise AssertionError("unreachable")  # the last attempt returns or raises


def _is_partition_failure(exc: Exception) -> bool:
    """Whether `exc` is TVM refusing to unroll a loop that LoopPartition left with a bound
    depending on an outer loop (some tuned tilings: a tile loop split at the padding); such a
    module is compiled again without the partition."""
    return "Cannot unroll non-constant loop" in str(exc)


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
