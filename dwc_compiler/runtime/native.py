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

    def instantiate(self, spec: Any, target: Any, executable: Any) -> Loaded:
        """The module jitted in this process; its ``main`` looked up once (a lookup by name
        costs ~14 us a call, tvm-notes.md)."""
        module = executable.jit()
        return Loaded(invoke=module["main"], executable=executable, module=module, checks_arguments=True)

    def compile_entry(self, source: Any, name: str, target: Any) -> Any:
        """The function `name` of `source` (``source[name]``: a PrimFunc), compiled and jitted alone."""
        import tvm

        return self.compile(tvm.IRModule({name: source[name]}), target).jit()[name]

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
        invokes = {offset: module[name] for offset, name in aligned.names.items()} if aligned is not None else {}
        return Loaded(invoke=module["main"], library_path=library, module=module, checks_arguments=True,
                      aligned_entries=aligned, aligned_invokes=invokes)
