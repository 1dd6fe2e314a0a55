"""`Kernel`: a compiled op with its spec and target, callable with the arguments the spec declares.

A kernel is made by a runtime (``native``, ``emulated``, ``cuda``), which says how its compiled
code is called (:class:`Loaded`), linked into a library and timed; the kernel itself checks the
arrays, keeps its output buffers (``outputs.py``), exports itself with its manifest and times
whole calls.
"""

from __future__ import annotations

import dataclasses
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import InvalidArgumentError
from ..files import atomic_path, sha256_of
from ..threads import threads_at_most
from .arrays import check_out, empty_aligned, prepare_array, random_arguments
from .lean_call import MISSING, make_checked_call, make_lean_call
from .manifest import manifest_for, write_manifest
from .outputs import OutputBuffers


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

    @classmethod
    def of(cls, samples_us: list[float], spec: Any) -> "BenchmarkResult":
        """The result of `samples_us` timings of `spec`."""
        return cls(median_us=statistics.median(samples_us), min_us=min(samples_us), max_us=max(samples_us),
                   repeats=len(samples_us), flops=spec.flops, bytes_moved=spec.min_bytes_moved)


@dataclasses.dataclass(frozen=True)
class AlignedEntries:
    """The compiled functions for inputs off a vector boundary (``ops/channel_blocks.py``).

    Attributes:
        vector_bytes: the vector's size; an input's offset is its address modulo this.
        names: function name by offset in bytes (the others take ``main``).
        max_threads: the functions serve calls on up to so many threads (``main`` takes the
            others; None: any number): those that run channel blocks in parallel keep the blocks
            whose output lines are shared on one thread up to a number of threads
            (``ops/channel_blocks.py``). A manifest of an older dwc's says ``single_thread``
            instead, read as 1.
    """

    vector_bytes: int
    names: dict[int, str]
    max_threads: int | None = None

    @staticmethod
    def name_for(offset: int) -> str:
        """The function name of the kernel for inputs `offset` bytes past a vector boundary."""
        return f"main_at{offset}"

    def to_dict(self) -> dict[str, Any]:
        """The manifest's form."""
        form = {"vector_bytes": self.vector_bytes, "names": {str(offset): name for offset, name in self.names.items()}}
        return form if self.max_threads is None else {**form, "max_threads": self.max_threads}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "AlignedEntries | None":
        """The manifest's form read back (None for a manifest without: a module with ``main`` only)."""
        if not data:
            return None
        limit = data.get("max_threads", 1 if data.get("single_thread") else None)
        return cls(int(data["vector_bytes"]), {int(offset): str(name) for offset, name in data["names"].items()},
                   None if limit is None else int(limit))


@dataclasses.dataclass(frozen=True)
class Loaded:
    """Compiled code as a runtime made it callable.

    Attributes:
        invoke: calls the code; with `host_arrays`, on prepared NumPy arrays (every argument,
            the output last); otherwise on the caller's arguments as given, ``invoke(*inputs, out=)``,
            returning the output (a GPU runtime takes device tensors as they are).
        host_arrays: whether `invoke` takes prepared NumPy arrays.
        checks_arguments: whether `invoke` is TVM's compiled function, which checks every
            argument's shape, dtype, layout and device itself (and raises, touching nothing, when
            one does not fit): then a call tries the arrays as given first, and Python checks
            them only when that fails.
        executable: the ``tvm.compile`` result, for kernels built in this process.
        library_path: the linked library, where one exists already (loaded or emulated kernels).
        module: the runtime module, where one is loaded in this process.
        aligned_entries: the functions for inputs off a vector boundary: their names by the
            input's address modulo the vector's bytes (multiples of 16 below it); `invoke` takes
            the others. None: ``main`` only.
        aligned_invokes: those functions made callable (all of them for a loaded module; for a
            kernel built in this process, each as it is first needed).
        aligned_source: for a kernel built in this process, ``main`` and those functions as
            PrimFuncs (``source[name]``, scheduled when first asked for; ``source.module()``
            all of them): each compiles on first use, the whole for export.
    """

    invoke: Callable[..., Any]
    host_arrays: bool = True
    checks_arguments: bool = False
    executable: Any = None
    library_path: Path | None = None
    module: Any = None
    aligned_entries: AlignedEntries | None = None
    aligned_invokes: dict[int, Callable[..., Any]] = dataclasses.field(default_factory=dict)
    aligned_source: Any = None


class Kernel:
    """A compiled op (``kernel(input, filter[, bias], out=None)`` for a depthwise convolution).

    Call it with the input arrays its spec declares (``spec.arguments``, all but the output),
    in order; it returns the output as a NumPy array (or writes into ``out=``).

    Attributes:
        spec: the op spec it computes.
        target: the :class:`~dwc_compiler.targets.TargetInfo` it was built for.
        schedule: which schedule built it (``"hand:x86"``, or a tuning record's id).
        record: which tuning record was considered and why (None when no record exists).
        call: ``kernel.call(input, filter, out=None)`` (the spec's input arguments by name) is
            ``kernel(input, filter, out=None)`` as a plain function, cheaper to enter on a hot path.
        call_exact: ``kernel.call_exact(input, filter)``, the cheapest: exactly the spec's input
            arguments, positionally, and no ``out`` (a wrong count is Python's TypeError).
    """

    def __init__(self, spec: Any, target: Any, schedule: str, runtime: Any, loaded: Loaded,
                 record: dict | None = None) -> None:
        self.spec = spec
        self.target = target
        self.schedule = schedule
        self.record = record
        self.runtime = runtime
        self.loaded = loaded
        arguments = spec.arguments
        self._inputs, self._output = arguments[:-1], arguments[-1]
        self._input_count = len(self._inputs)
        self._checks_arguments = loaded.checks_arguments
        self._output_dtype = np.dtype(self._output.dtype)
        to_argument = None
        if self._checks_arguments:  # TVM's function: hand it TVM's tensor of each output, made once
            import tvm_ffi

            to_argument = tvm_ffi.from_dlpack
        self._outputs = OutputBuffers(self._output.shape, self._output_dtype, to_argument)
        self._invoke = loaded.invoke
        self._compiling = threading.Lock()
        self.call, self.call_exact = self._lean_calls()

    def __repr__(self) -> str:
        return f"Kernel({self.spec.describe()}, target={self.target.name}, schedule={self.schedule})"

    def __call__(self, *inputs: Any, out: np.ndarray | None = None) -> Any:
        """Run the op on `inputs` (in ``spec.arguments`` order, the spec's layouts).

        Args:
            inputs: one array per input argument of the spec (e.g. input, filter, bias).
            out: optional C-contiguous, writable array of the output's shape and dtype. Give it
                on a 64-byte boundary (``dwc.empty_aligned``) for full speed: kernels that run
                channel blocks in parallel (small NHWC planes) otherwise share a cache line of
                every pixel between two threads (7x7x960: 2.7x the time at 2 threads).

        Raises:
            InvalidArgumentError: naming the argument that is missing or whose shape or dtype is wrong.
        """
        return self.call(*inputs, out=out)

    def _lean_calls(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """``kernel.call`` and ``kernel.call_exact``: the call as plain functions of the spec's
        input arguments (``call(input, filter, out=None)``, ``call_exact(input, filter)``), cheaper
        to enter than ``__call__``, for callers on a hot path such as ``depthwise_conv2d`` (see
        ``runtime/lean_call.py``).

        Where the compiled function checks its arguments (native CPU kernels), the arrays go to
        it as given, NumPy arrays and DLPack tensors alike; when it refuses one, the checked path
        copies what can be copied or names what is wrong. Elsewhere every call is checked.
        """
        checked, names = self._checked_call, [argument.name for argument in self._inputs]
        if not self._checks_arguments:
            return make_checked_call(names, checked)
        entries = self.loaded.aligned_entries
        if entries is None:
            return make_lean_call(names, self._invoke, self._outputs, checked)
        return make_lean_call(names, self._invoke, self._outputs, checked, self.loaded.aligned_invokes,
                              entries.names, entries.vector_bytes, self.aligned_function, entries.max_threads)

    def _checked_call(self, inputs: tuple, out: Any) -> Any:
        """The call with every argument checked in Python, copied where it must be (`inputs`
        may hold ``MISSING`` for arguments the caller left out)."""
        missing = next((index for index, value in enumerate(inputs) if value is MISSING), None)
        if missing is not None or len(inputs) != self._input_count:
            names = ", ".join(argument.name for argument in self._inputs)
            if missing is not None:  # only the named parameters default to MISSING
                raise InvalidArgumentError(f"{self._inputs[missing].name}: missing; this kernel takes "
                                           f"{self._input_count} arrays ({names})")
            raise InvalidArgumentError(
                f"{self._inputs[min(len(inputs), len(self._inputs) - 1)].name}: this kernel takes "
                f"{len(self._inputs)} arrays ({names}), got {len(inputs)}")
        if not self.loaded.host_arrays:
            return self._invoke(*inputs, out=out)
        arrays = [prepare_array(value, argument) for value, argument in zip(inputs, self._inputs)]
        entries = self.loaded.aligned_entries
        usable = entries is not None and (entries.max_threads is None or threads_at_most(entries.max_threads))
        offset = arrays[0].ctypes.data % entries.vector_bytes if usable else 0
        run = self.aligned_function(offset)
        if run is None:
            offset, run = 0, self._invoke
        if out is None:
            result, argument = self._outputs.take(offset)
        else:
            result = argument = check_out(out, self._output)
        run(*arrays, argument)
        return result

    def aligned_function(self, offset: int) -> Callable[..., Any] | None:
        """The compiled function for inputs `offset` bytes past a vector boundary (the address
        modulo ``loaded.aligned_entries.vector_bytes``), None where the kernel has none. A kernel
        built in this process compiles it on first use (0.25 s for 14x14x576-s1 here): a process
        that only sees aligned inputs (PyTorch's allocator aligns to 64 bytes) never pays for it."""
        run = self.loaded.aligned_invokes.get(offset)
        entries = self.loaded.aligned_entries
        if run is not None or entries is None or offset not in entries.names or self.loaded.aligned_source is None:
            return run
        with self._compiling:
            run = self.loaded.aligned_invokes.get(offset)
            if run is None:
                run = self.runtime.compile_entry(self.loaded.aligned_source, entries.names[offset], self.target)
                self.loaded.aligned_invokes[offset] = run
        return run

    # --- export ---------------------------------------------------------------------------
    def export(self, path: str | Path) -> Path:
        """Write the shared library to `path` and its manifest to ``<path>.json``, each atomically.

        Returns:
            The library's path.

        Raises:
            BuildError: when the library cannot be written (e.g. a missing cross compiler).
        """
        library = Path(path).expanduser().resolve()
        loaded = self.loaded
        if loaded.aligned_source is not None:  # the library holds main and every variant
            loaded = dataclasses.replace(loaded, executable=self.runtime.compile(loaded.aligned_source.module(),
                                                                                 self.target))
        with atomic_path(library) as temporary:
            self.runtime.write_library(loaded, self.target, temporary)
            digest = sha256_of(temporary)
        write_manifest(library, manifest_for(self, library.name, digest))
        return library

    def inspect_source(self, kind: str = "asm") -> str:
        """Generated code: ``"asm"`` or ``"ll"`` for CPU targets, ``"cuda"`` for CUDA ones."""
        if self.loaded.executable is None:
            raise InvalidArgumentError("kind: source is only kept for kernels built in this process, not loaded ones")
        module = self.loaded.executable.mod
        if kind == "cuda":
            return "\n".join(imported.inspect_source("cuda") for imported in module.imports)
        return module.inspect_source(kind)

    # --- timing ---------------------------------------------------------------------------
    def benchmark(self, repeats: int = 100, warmup: int = 10, min_time_s: float = 0.2,
                  seed: int = 0) -> BenchmarkResult:
        """Time the kernel on random data, as its runtime measures it (whole calls on the CPU,
        the kernel alone on a GPU)."""
        return self.runtime.benchmark(self, repeats=repeats, warmup=warmup, min_time_s=min_time_s, seed=seed)


def time_whole_calls(kernel: Kernel, repeats: int, warmup: int, min_time_s: float, seed: int) -> BenchmarkResult:
    """Time whole calls (``kernel(*inputs, out=out)``) on random 64-byte-aligned data.

    Each sample is one call timed with ``perf_counter``; `warmup` calls come first, then at
    least `repeats` samples and at least `min_time_s` seconds of them.
    """
    arguments = kernel.spec.arguments
    inputs = random_arguments(arguments, seed)
    out = empty_aligned(arguments[-1].shape, arguments[-1].dtype)
    for _ in range(warmup):
        kernel(*inputs, out=out)
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < repeats or time.perf_counter() - started < min_time_s:
        begin = time.perf_counter()
        kernel(*inputs, out=out)
        samples.append((time.perf_counter() - begin) * 1e6)
    return BenchmarkResult.of(samples, kernel.spec)
