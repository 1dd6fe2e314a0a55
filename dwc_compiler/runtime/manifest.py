"""Exported modules: the shared library plus the JSON manifest that says what it is.

The manifest (``<library>.json``) holds the op's spec, the target, the workload key, the dwc and
TVM versions, the schedule and tuning record used and the library's SHA-256.
:func:`read_module` reads it back and refuses, with the reason, a module that cannot run
correctly here.
"""

from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import DwcError, IncompatibleModuleError
from ..files import sha256_of, write_json_atomic
from ..ops import spec_from_dict
from ..targets import TargetInfo

MANIFEST_FORMAT = "dwc-module/1"


def manifest_path(library: Path) -> Path:
    """Where the manifest of `library` lives: ``k.so`` -> ``k.so.json``."""
    return library.with_name(library.name + ".json")


def manifest_for(kernel: Any, library_name: str, library_sha256: str) -> dict[str, Any]:
    """The manifest of `kernel` exported as `library_name` with the given digest."""
    import tvm

    return {
        "format": MANIFEST_FORMAT,
        "dwc_version": __version__,
        "tvm_version": tvm.__version__,
        "op": kernel.spec.op,
        "spec": kernel.spec.to_dict(),
        "arguments": [argument.name for argument in kernel.spec.arguments],
        "workload_key": kernel.spec.workload_key,
        "description": kernel.spec.describe(),
        "target": kernel.target.to_dict(),
        "schedule": kernel.schedule,
        "record": kernel.record,
        "aligned_entries": kernel.loaded.aligned_entries.to_dict() if kernel.loaded.aligned_entries else None,
        "library": library_name,
        "library_sha256": library_sha256,
        "built_on": {"machine": platform.machine(), "node": platform.node()},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_manifest(library: Path, manifest: dict[str, Any]) -> None:
    """Write `manifest` beside `library`, atomically."""
    write_json_atomic(manifest_path(library), manifest)


def _read_manifest(library: Path) -> dict[str, Any]:
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


def read_module(library: Path, expected_spec: Any = None) -> tuple[Any, TargetInfo, dict[str, Any]]:
    """(spec, target, manifest) of the exported module `library`, checked for use here.

    Raises:
        IncompatibleModuleError: the manifest is missing, unreadable or damaged; the module was
            built by another TVM version or for another spec than `expected_spec`; or the
            library changed since it was exported.
    """
    import tvm

    manifest = _read_manifest(library)
    try:
        spec = spec_from_dict(manifest["spec"])
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
    return spec, target, manifest
