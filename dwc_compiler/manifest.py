"""Exported modules: the shared library plus the JSON manifest that says what it is.

The manifest (``<library>.json``) holds the spec, the target, the workload key, the dwc and
TVM versions, the schedule used and the library's SHA-256. :func:`load_kernel` reads both back
and refuses, with the reason, a module it cannot run correctly here.
"""

from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import DwcError, IncompatibleModuleError
from .files import atomic_path, sha256_of, write_json_atomic
from .spec import DepthwiseSpec

MANIFEST_FORMAT = "dwc-module/1"


def manifest_path(library: Path) -> Path:
    """Where the manifest of `library` lives: ``k.so`` -> ``k.so.json``."""
    return library.with_name(library.name + ".json")


def export_kernel(kernel, library: Path) -> Path:
    """Write `kernel`'s library and manifest beside each other; neither is ever half-written."""
    import tvm

    library = library.expanduser().resolve()
    with atomic_path(library) as temporary:
        kernel._write_library(temporary)
        digest = sha256_of(temporary)
    manifest = {
        "format": MANIFEST_FORMAT,
        "dwc_version": __version__,
        "tvm_version": tvm.__version__,
        "spec": kernel.spec.to_dict(),
        "workload_key": kernel.spec.workload_key,
        "description": kernel.spec.describe(),
        "target": kernel.target.to_dict(),
        "schedule": kernel.schedule,
        "record": kernel.record,
        "library": library.name,
        "library_sha256": digest,
        "built_on": {"machine": platform.machine(), "node": platform.node()},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(manifest_path(library), manifest)
    return library


def read_manifest(library: Path) -> dict[str, Any]:
    """The manifest of `library`, checked for form only.

    Raises:
        IncompatibleModuleError: the library or manifest is missing or unreadable.
    """
    if not library.is_file():
        raise IncompatibleModuleError(f"module: no file at {library}")
    path = manifest_path(library)
    if not path.is_file():
        raise IncompatibleModuleError(
            f"module: {library} has no manifest ({path.name} beside it); dwc loads only modules "
            "exported by `dwc build` or Kernel.export")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IncompatibleModuleError(f"module: the manifest {path} is unreadable ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise IncompatibleModuleError(
            f"module: {path} is not a dwc manifest (expected format {MANIFEST_FORMAT!r})")
    return manifest


def load_kernel(path: str | Path, expected_spec: DepthwiseSpec | None = None):
    """The :class:`~dwc_compiler.kernel.Kernel` exported at `path`.

    Args:
        path: the shared library written by ``dwc build`` or ``Kernel.export``.
        expected_spec: if given, refuse a module built for any other spec.

    Raises:
        IncompatibleModuleError: the manifest is missing or unreadable; the module was built
            by another TVM version, for another spec, for a CPU feature or architecture this
            machine lacks; or the library changed since it was exported.
    """
    import tvm

    from .emulation import emulated_runner
    from .kernel import Kernel
    from .targets import TargetInfo, missing_cpu_flags

    library = Path(path).expanduser().resolve()
    manifest = read_manifest(library)
    try:
        spec = DepthwiseSpec.from_dict(manifest["spec"])
        target_fields = dict(manifest["target"])
        target_fields["required_cpu_flags"] = tuple(target_fields.get("required_cpu_flags", ()))
        target = TargetInfo(**target_fields)
    except (DwcError, KeyError, TypeError) as exc:
        raise IncompatibleModuleError(f"module: the manifest of {library.name} is damaged ({exc})") from exc
    if manifest.get("tvm_version") != tvm.__version__:
        raise IncompatibleModuleError(
            f"module: {library.name} was built with TVM {manifest.get('tvm_version')}, this is TVM "
            f"{tvm.__version__}; rebuild it with `dwc build`")
    if expected_spec is not None and expected_spec.workload_key != spec.workload_key:
        raise IncompatibleModuleError(
            f"module: {library.name} computes {spec.describe()}, not the requested {expected_spec.describe()}")
    if sha256_of(library) != manifest.get("library_sha256"):
        raise IncompatibleModuleError(
            f"module: {library.name} does not match its manifest (the library changed after export); rebuild it")
    if target.family == "cuda":
        from .cuda_runtime import CudaCaller, load_cuda_module

        module = load_cuda_module(library, target)
        return Kernel(spec, target, manifest.get("schedule", "?"), module=module, library_path=library,
                      record=manifest.get("record"), device_caller=CudaCaller(module["main"], spec))
    if not target.runs_natively:
        return Kernel(spec, target, manifest.get("schedule", "?"), library_path=library,
                      runner=emulated_runner(library, spec, target), record=manifest.get("record"))
    missing = missing_cpu_flags(target.required_cpu_flags, target.arch)
    if missing:
        raise IncompatibleModuleError(
            f"module: {library.name} was built for {target.name} ({target.resolved_from or target.tvm_target.get('mcpu')}) "
            f"and needs CPU features this machine lacks: {', '.join(missing)}; rebuild it with --target host")
    module = tvm.runtime.load_module(str(library))
    return Kernel(spec, target, manifest.get("schedule", "?"), module=module, library_path=library,
                  record=manifest.get("record"))
