"""Kernels for this machine's CPU: the compiled module runs in this process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import IncompatibleModuleError
from ..targets import missing_cpu_flags
from .base import Runtime
from .kernel import AlignedEntries, Loaded


class NativeRuntime(Runtime):
    """Modules of this CPU's architecture: jitted or loaded here, called through TVM's FFI with
    NumPy arrays (DLPack, no copy)."""

    name = "native"

    def instantiate(self, spec: Any, target: Any, executable: Any, aligned: AlignedEntries | None = None) -> Loaded:
        """The module jitted in this process; its ``main`` (and the functions `aligned` names)
        looked up once (a lookup by name costs ~14 us a call, tvm-notes.md)."""
        return self._loaded(executable.jit(), aligned, executable=executable)

    @staticmethod
    def _loaded(module: Any, aligned: AlignedEntries | None, **where: Any) -> Loaded:
        invokes = {offset: module[name] for offset, name in aligned.names.items()} if aligned is not None else {}
        return Loaded(invoke=module["main"], module=module, checks_arguments=True, aligned_invokes=invokes,
                      aligned_entries=aligned if invokes else None, **where)

    def load(self, library: Path, spec: Any, target: Any, aligned: AlignedEntries | None = None) -> Loaded:
        """Load `library`, refusing one built for CPU features this machine lacks."""
        import tvm

        missing = missing_cpu_flags(target.required_cpu_flags, target.arch)
        if missing:
            raise IncompatibleModuleError(
                f"module: {library.name} was built for {target.name} "
                f"({target.resolved_from or target.tvm_target.get('mcpu')}) and needs CPU features this "
                f"machine lacks: {', '.join(missing)}; rebuild it with --target host")
        module = tvm.runtime.load_module(str(library))
        absent = [name for name in (aligned.names.values() if aligned is not None else ())
                  if not module.implements_function(name)]
        if absent:
            raise IncompatibleModuleError(
                f"module: {library.name} lacks the functions its manifest names ({', '.join(absent)}); rebuild it")
        return self._loaded(module, aligned, library_path=library)
