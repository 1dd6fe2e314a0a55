"""Named targets: one folder each (``<name>/target.json``, ``<name>/records/``), plus ``host``.

A target says what TVM compiles for (its target dict), which schedule family applies, the SIMD
width the schedules vectorize to, which CPU features a machine needs to run its modules, and
how to export (a cross compiler for foreign architectures), and whose tuning records its builds
use. ``host`` is resolved here, at run time, to the running CPU, and uses the records of the
named target it matches (an AVX-512 machine those of ``x86-avx512``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import platform
from importlib import resources
from pathlib import Path
from typing import Any

from ..cuda_driver import gpu_present
from ..errors import UnknownTargetError
from ..threads import usable_cores

HOST = "host"
HOST_GPU = "host-gpu"

# x86 features an LLVM build for the host CPU may use: a host build requires those the
# building machine has, so that its module is refused where they are missing.
_X86_ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "movbe", "avx512f",
                  "avx512bw", "avx512dq", "avx512vl", "avx512cd", "avx512_vnni", "avx512_bf16",
                  "avx512vbmi", "avx512_vbmi2", "avx512ifma", "avx512_fp16")
_ARM_ISA_FLAGS = ("asimd", "fphp", "asimdhp", "asimddp", "sve", "sve2", "i8mm", "bf16")


@dataclasses.dataclass(frozen=True)
class TargetInfo:
    """A resolved target.

    Attributes:
        name: the name users pass (``x86-avx512``, ``host``, ...).
        description: one line for people.
        family: the schedule family: ``x86``, ``arm`` or ``cuda``.
        arch: ``x86_64``, ``aarch64`` or ``cuda``: where its modules run.
        vector_bits: the CPU SIMD width the schedules vectorize to (0 for GPUs).
        tvm_target: the TVM target dict.
        required_cpu_flags: ``/proc/cpuinfo`` flags a CPU needs to run the modules.
        cross_compiler: the compiler that links exported modules, when not the host's.
        qemu_cpu: the CPU model qemu-user emulates for this target's modules.
        resolved_from: for ``host``, the CPU it was resolved to.
        records_target: the named target whose tuning records builds for this one use (its own
            name for a named target; for ``host``, the named target it matches; None if none).
    """

    name: str
    description: str
    family: str
    arch: str
    vector_bits: int
    tvm_target: dict[str, Any]
    required_cpu_flags: tuple[str, ...] = ()
    cross_compiler: str | None = None
    qemu_cpu: str | None = None
    resolved_from: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    records_target: str | None = None

    def lanes(self, dtype: str) -> int:
        """SIMD lanes of `dtype` in one vector register of this target."""
        bits = {"float16": 16, "float32": 32, "float64": 64}[dtype]
        return max(self.vector_bits // bits, 1)

    def tvm(self):
        """The ``tvm.target.Target``."""
        import tvm

        return tvm.target.Target(self.tvm_target)

    @property
    def runs_natively(self) -> bool:
        """True when modules for this target run in this process on this machine."""
        return self.arch == platform.machine()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, as written into module manifests."""
        return dataclasses.asdict(self)




@functools.lru_cache(maxsize=1)
def host_cpu_flags() -> frozenset[str]:
    """The running CPU's feature flags as ``/proc/cpuinfo`` names them (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def _resolve_host() -> TargetInfo:
    import tvm

    machine = platform.machine()
    flags = host_cpu_flags()
    cpu = tvm.target.codegen.llvm_get_system_cpu()
    if machine == "x86_64":
        vector_bits = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
        family, isa = "x86", _X86_ISA_FLAGS
    elif machine == "aarch64":
        vector_bits, family, isa = 128, "arm", _ARM_ISA_FLAGS
    else:
        raise UnknownTargetError(f"target: 'host' is not supported on {machine}; dwc runs on x86_64 and aarch64")
    matched = _matching_named_target(
        lambda named: (named.arch == machine and named.family == family and named.vector_bits == vector_bits
                       and all(flag in flags for flag in named.required_cpu_flags)),
        lambda named: named.tvm_target.get("mcpu") == cpu)
    return TargetInfo(
        name=HOST, description=f"this machine: {machine} {cpu}, {vector_bits}-bit vectors"
                               + (f"; uses {matched}'s tuning records" if matched else ""),
        family=family, arch=machine, vector_bits=vector_bits,
        tvm_target={"kind": "llvm", "mcpu": cpu, "num-cores": usable_cores()},
        required_cpu_flags=tuple(sorted(flag for flag in isa if flag in flags)), resolved_from=cpu,
        records_target=matched)


def _matching_named_target(fits, exact) -> str | None:
    """The named target a resolved one uses the records of: among those that `fits`, one that is
    `exact` (the same CPU model), else the most specific (most required CPU features), a generic
    one (no ``mcpu``) before a named core."""
    candidates = [named for named in map(_load_named, named_target_names()) if fits(named)]
    if not candidates:
        return None
    exact_ones = [named for named in candidates if exact(named)]
    if exact_ones:
        return exact_ones[0].name
    return max(candidates, key=lambda named: (len(named.required_cpu_flags), "mcpu" not in named.tvm_target)).name


def _resolve_host_gpu() -> TargetInfo:
    import tvm

    if not gpu_present():
        raise UnknownTargetError(
            "target: host-gpu needs an NVIDIA GPU with its driver, and none is present here; build with "
            "cuda-sm80 or cuda-sm90 and run the exported module on a GPU machine")
    device = tvm.cuda(0)
    sm = int(device.compute_version.replace(".", ""))
    return TargetInfo(
        name=HOST_GPU, description=f"this machine's GPU: {device.device_name} (sm_{sm})", family="cuda",
        arch="cuda", vector_bits=128,
        tvm_target={"kind": "cuda", "arch": f"sm_{sm}", "max_threads_per_block": device.max_threads_per_block,
                    "max_num_threads": device.max_threads_per_block,
                    "max_shared_memory_per_block": device.max_shared_memory_per_block,
                    "thread_warp_size": device.warp_size, "registers_per_block": 65536, "host": {"kind": "llvm"}},
        resolved_from=device.device_name, extra={"sm": sm},
        records_target=_matching_named_target(lambda named: named.extra.get("sm") == sm, lambda named: True))


def _load_named(name: str) -> TargetInfo:
    path = Path(str(resources.files(__name__))) / name / "target.json"
    data = json.loads(path.read_text())
    tvm_target = dict(data.pop("tvm_target"))
    if tvm_target.get("num-cores") == "auto":
        tvm_target["num-cores"] = usable_cores()
    known = {field.name for field in dataclasses.fields(TargetInfo)}
    extra = {key: value for key, value in data.items() if key not in known}
    fields = {key: value for key, value in data.items() if key in known}
    fields["required_cpu_flags"] = tuple(fields.get("required_cpu_flags", ()))
    return TargetInfo(name=name, tvm_target=tvm_target, extra=extra, records_target=name, **fields)


def named_target_names() -> list[str]:
    """The named targets (every one with a folder here), sorted."""
    root = Path(str(resources.files(__name__)))
    return sorted(entry.name for entry in root.iterdir() if (entry / "target.json").is_file())


def target_names() -> list[str]:
    """Every target name, ``host`` and ``host-gpu`` first."""
    return [HOST, HOST_GPU] + named_target_names()


def shipped_records_dir(name: str) -> Path | None:
    """The records shipped with dwc for the named target `name` (``targets/<name>/records``), if any."""
    folder = Path(str(resources.files(__name__))) / name / "records"
    return folder if folder.is_dir() else None


def resolve_target(target: "str | TargetInfo") -> TargetInfo:
    """The target called `target` (a TargetInfo is returned as it is).

    Raises:
        UnknownTargetError: naming the accepted target names.
    """
    if isinstance(target, TargetInfo):
        return target
    if not isinstance(target, str):
        raise UnknownTargetError(f"target: expected a target name (one of {', '.join(target_names())}), got {target!r}")
    return _resolve_name(target)


@functools.lru_cache(maxsize=None)
def _resolve_name(name: str) -> TargetInfo:  # cached: a target does not change within a process
    if name == HOST:
        return _resolve_host()
    if name == HOST_GPU:
        return _resolve_host_gpu()
    if name not in target_names():
        raise UnknownTargetError(f"target: unknown target {name!r}; expected one of {', '.join(target_names())}")
    return _load_named(name)


def missing_cpu_flags(required: tuple[str, ...] | list[str], arch: str) -> list[str]:
    """The flags in `required` that this machine's CPU lacks (all of them on another arch)."""
    if arch != platform.machine():
        return list(required)
    flags = host_cpu_flags()
    return [flag for flag in required if flag not in flags]
