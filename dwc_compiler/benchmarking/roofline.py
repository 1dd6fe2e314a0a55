"""This machine's roofline, measured: the FMA peak and the streaming bandwidth per thread count.

A small C program (``native/roofline.c``) is compiled with ``-O3 -march=native -fopenmp`` and run:
the FMA peak with 12 independent vector accumulators per thread, and the copy bandwidth (bytes
read plus written) for a working set the size of the layer, which is what a layer streams
through from a warm cache.
"""

from __future__ import annotations

import dataclasses
import functools
import subprocess
from importlib import resources
from pathlib import Path

from ..files import cache_dir
from ..errors import DwcError
from ..toolchain import require_tool


@dataclasses.dataclass(frozen=True)
class Roofline:
    """Peak rates of this machine at one thread count."""

    threads: int
    fma_gflops: float

    def bound_us(self, flops: int, bytes_moved: int, bandwidth_gbytes_per_s: float) -> float:
        """The least time the roofline allows for `flops` and `bytes_moved`, in microseconds."""
        return max(flops / self.fma_gflops / 1e3, bytes_moved / bandwidth_gbytes_per_s / 1e3)


@functools.lru_cache(maxsize=1)
def _probe_binary() -> Path:
    compiler = require_tool("gcc")
    source = Path(str(resources.files("dwc_compiler"))) / "native" / "roofline.c"
    binary = cache_dir() / "roofline-probe"
    binary.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([compiler, "-O3", "-march=native", "-fopenmp", str(source), "-o", str(binary)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise DwcError(f"could not build the roofline probe: {done.stderr.strip()[-1000:]}")
    return binary


def _run_probe(*args: str) -> float:
    done = subprocess.run([str(_probe_binary()), *args], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise DwcError(f"roofline probe failed: {done.stderr.strip()}")
    return float(done.stdout.split()[1])


@functools.lru_cache(maxsize=None)
def fma_peak_gflops(threads: int) -> float:
    """float32 FMA peak of `threads` threads, GFLOP/s (best of 5 runs)."""
    return _run_probe("fma", str(threads))


@functools.lru_cache(maxsize=None)
def copy_bandwidth_gbytes_per_s(threads: int, working_set_bytes: int) -> float:
    """Read+write bandwidth of `threads` threads streaming `working_set_bytes`, GB/s (best of 5)."""
    return _run_probe("copy", str(threads), str(max(working_set_bytes, 4096)))


def roofline(threads: int) -> Roofline:
    """The measured roofline at `threads` threads."""
    return Roofline(threads=threads, fma_gflops=fma_peak_gflops(threads))
