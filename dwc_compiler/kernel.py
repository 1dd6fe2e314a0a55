"""`Kernel`: a compiled depthwise convolution with its spec and target.

Callable on NumPy arrays (and anything speaking DLPack), exportable as a shared library plus a
JSON manifest, loadable back with :func:`load`, and timed with :meth:`Kernel.benchmark`.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import InvalidArgumentError
from .spec import DepthwiseSpec

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
    """Timings of one kernel: the median and spread of `repeats` whole calls, in microseconds."""

    median_us: float
    min_us: float
    max_us: float
    repeats: int
    flops: int
    bytes_moved: int

    @property
    def gflops(self) -> float:
        """GFLOP/s at the median."""
        return self.flops / self.median_us / 1e3

    @property
    def gbytes_per_s(self) -> float:
        """GB/s of the minimum bytes moved, at the median."""
        return self.bytes_moved / self.median_us / 1e3


ALIGNMENT_BYTES = 64


def empty_aligned(shape: tuple[int, ...], dtype: str | np.dtype) -> np.ndarray:
    """An uninitialized C-contiguous array whose data starts on a 64-byte boundary.

    dwc's kernels accept any alignment, but vector loads that straddle cache lines cost up to
    a third of a layer's time (56x56x144: 156 us unaligned, 122 us aligned, one thread here).
    NumPy aligns large arrays to 16 bytes only; allocate inputs with this to get full speed.
    """
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    backing = np.empty(count * dtype.itemsize + ALIGNMENT_BYTES, np.uint8)
    start = (-backing.ctypes.data) % ALIGNMENT_BYTES
    return backing[start:start + count * dtype.itemsize].view(dtype).reshape(shape)


def _to_numpy(value: Any, parameter: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "__dlpack__"):
        try:
            return np.from_dlpack(value)
        except (BufferError, RuntimeError, TypeError, ValueError) as exc:
            raise InvalidArgumentError(
                f"{parameter}: cannot read this {type(value).__name__} through DLPack on the CPU "
                f"({exc}); pass a CPU tensor or a NumPy array") from exc
    try:
        return np.asarray(value)
    except Exception as exc:
        raise InvalidArgumentError(f"{parameter}: expected an array, got {type(value).__name__}") from exc


def prepare_array(value: Any, shape: tuple[int, ...], dtype: np.dtype, parameter: str) -> np.ndarray:
    """`value` as a C-contiguous, writable, element-aligned NumPy array of `shape` and `dtype`.

    No copy is made when `value` already is one (the common case); misaligned, non-contiguous,
    read-only or byte-swapped arrays are copied, since the generated code needs none of those.

    Raises:
        InvalidArgumentError: on a shape or dtype other than the kernel's.
    """
    array = _to_numpy(value, parameter)
    if array.shape != shape:
        raise InvalidArgumentError(
            f"{parameter}: expected shape {list(shape)}, got {list(array.shape)}")
    if array.dtype != dtype:
        if array.dtype.kind == "f" and array.dtype.newbyteorder("=") == dtype:
            return array.astype(dtype)
        raise InvalidArgumentError(f"{parameter}: expected dtype {dtype.name}, got {array.dtype}")
    flags = array.flags
    if flags.c_contiguous and flags.writeable and flags.aligned:  # aligned: to the element size
        return array
    return np.array(array, dtype=dtype, order="C", copy=True)


class Kernel:
    """A compiled depthwise convolution.

    Call it as ``kernel(input, filter)`` (or with ``out=`` to write into an array of yours);
    it returns the output as a NumPy array.

    Attributes:
        spec: the :class:`DepthwiseSpec` it computes.
        target: the :class:`~dwc_compiler.targets.TargetInfo` it was built for.
        schedule: which schedule built it (``"hand:x86"``, or a tuning record's id).
    """

    def __init__(self, spec: DepthwiseSpec, target, schedule: str, *, module=None,
                 executable=None, library_path: Path | None = None,
                 runner: Callable[..., None] | None = None, record: dict | None = None,
                 device_caller: Callable[..., Any] | None = None) -> None:
        self.spec = spec
        self.target = target
        self.schedule = schedule
        self.record = record
        self._module = module
        self._executable = executable
        self._library_path = library_path
        self._dtype = np.dtype(spec.dtype)
        self._input_shape = tuple(spec.input_shape)
        self._filter_shape = tuple(spec.filter_shape)
        self._output_shape = tuple(spec.output_shape)
        self._spare_output: np.ndarray | None = None
        # Looked up once: a per-call lookup by name costs ~14 us (tvm-notes.md).
        self._function = runner if runner is not None else (module["main"] if module is not None else None)
        # GPU kernels take device tensors as they are, and NumPy arrays through copies.
        self._device_caller = device_caller

    def __repr__(self) -> str:
        return f"Kernel({self.spec.describe()}, target={self.target.name}, schedule={self.schedule})"

    def __call__(self, input: Any, filter: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Run the convolution on `input` and `filter` (in the spec's layouts).

        Args:
            input: shape ``spec.input_shape``, dtype ``spec.dtype``.
            filter: shape ``[KH, KW, C, M]``, dtype ``spec.dtype``.
            out: optional C-contiguous, writable array of the output's shape and dtype.

        Raises:
            InvalidArgumentError: naming the argument whose shape or dtype is wrong.
        """
        if self._device_caller is not None:
            return self._device_caller(input, filter, out)
        data = prepare_array(input, self._input_shape, self._dtype, "input")
        weights = prepare_array(filter, self._filter_shape, self._dtype, "filter")
        if out is None:
            result = self._fresh_output()
        else:
            result = self._check_out(out)
        self._function(data, weights, result)
        return result

    def _fresh_output(self) -> np.ndarray:
        # Reuse the last output buffer when nothing outside holds it any more: fresh pages cost
        # more than a small layer's run. Views of it (whose base NumPy collapses to the shared
        # backing buffer, not to `spare`) are seen on the backing buffer's count.
        spare = self._spare_output
        if (spare is not None and sys.getrefcount(spare) == 3  # self, `spare`, the argument
                and sys.getrefcount(spare.base) == 2):  # spare's own reference, the argument
            return spare
        spare = self._spare_output = empty_aligned(self._output_shape, self._dtype)
        return spare

    def _check_out(self, out: Any) -> np.ndarray:
        if not isinstance(out, np.ndarray) or out.shape != self._output_shape or out.dtype != self._dtype:
            raise InvalidArgumentError(
                f"out: expected a NumPy array of shape {list(self._output_shape)} and dtype "
                f"{self._dtype.name}, got {getattr(out, 'shape', type(out).__name__)} "
                f"{getattr(out, 'dtype', '')}")
        if not (out.flags.c_contiguous and out.flags.writeable and out.ctypes.data % self._dtype.itemsize == 0):
            raise InvalidArgumentError("out: must be C-contiguous, writable and element-aligned")
        return out

    # --- export ---------------------------------------------------------------------------
    def export(self, path: str | Path) -> Path:
        """Write the shared library to `path` and its manifest to ``<path>.json``, atomically.

        Returns:
            The library's path.

        Raises:
            BuildError: when the library cannot be written (e.g. a missing cross compiler).
        """
        from .manifest import export_kernel

        return export_kernel(self, Path(path))

    def _write_library(self, destination: Path) -> None:
        """Write this kernel's shared library to `destination` (a temporary path)."""
        if self._library_path is not None:
            shutil.copyfile(self._library_path, destination)
            return
        from .toolchain import export_library

        export_library(self._executable, destination, self.target)

    def inspect_source(self, kind: str = "asm") -> str:
        """Generated code: ``"asm"`` or ``"ll"`` for CPU targets, ``"cuda"`` for CUDA ones."""
        if self._executable is None:
            raise InvalidArgumentError("kind: source is only kept for kernels built in this process, not loaded ones")
        module = self._executable.mod
        if kind == "cuda":
            return "\n".join(imported.inspect_source("cuda") for imported in module.imports)
        return module.inspect_source(kind)

    # --- timing ---------------------------------------------------------------------------
    def benchmark(self, repeats: int = 100, warmup: int = 10, min_time_s: float = 0.2,
                  seed: int = 0) -> BenchmarkResult:
        """Time whole calls (``kernel(input, filter, out=out)``) on random data.

        Each sample is one call timed with ``perf_counter``; `warmup` calls come first, then at
        least `repeats` samples and at least `min_time_s` seconds of them.
        """
        if self._device_caller is not None and self._module is not None:
            return self._benchmark_on_device(repeats, seed)
        rng = np.random.default_rng(seed)
        data = empty_aligned(self._input_shape, self._dtype)
        data[...] = rng.standard_normal(self._input_shape)
        weights = empty_aligned(self._filter_shape, self._dtype)
        weights[...] = rng.standard_normal(self._filter_shape)
        out = empty_aligned(self._output_shape, self._dtype)
        for _ in range(warmup):
            self(data, weights, out=out)
        samples: list[float] = []
        started = time.perf_counter()
        while len(samples) < repeats or time.perf_counter() - started < min_time_s:
            begin = time.perf_counter()
            self(data, weights, out=out)
            samples.append((time.perf_counter() - begin) * 1e6)
        return BenchmarkResult(median_us=statistics.median(samples), min_us=min(samples),
                               max_us=max(samples), repeats=len(samples), flops=self.spec.flops,
                               bytes_moved=self.spec.min_bytes_moved)

    def _benchmark_on_device(self, repeats: int, seed: int) -> BenchmarkResult:
        """GPU timing with TVM's time evaluator (device events): the kernel alone, on device tensors."""
        import tvm

        device = tvm.cuda(0)
        rng = np.random.default_rng(seed)
        data = tvm.runtime.tensor(rng.standard_normal(self._input_shape).astype(self._dtype), device)
        weights = tvm.runtime.tensor(rng.standard_normal(self._filter_shape).astype(self._dtype), device)
        out = tvm.runtime.empty(self._output_shape, self.spec.dtype, device)
        evaluator = self._module.time_evaluator("main", device, number=20, repeat=repeats, min_repeat_ms=1)
        samples = [seconds * 1e6 for seconds in evaluator(data, weights, out).results]
        return BenchmarkResult(median_us=statistics.median(samples), min_us=min(samples), max_us=max(samples),
                               repeats=len(samples), flops=self.spec.flops, bytes_moved=self.spec.min_bytes_moved)
