"""What dwc's TIR passes (``tir_passes``, ``tir_lane_order``) share: reading constants, the
target a function is compiled for, and TVM's common subexpressions."""

from __future__ import annotations

from typing import Any


def as_int(expr: Any) -> int | None:
    """`expr` as a Python int where it is an integer constant, else None."""
    from tvm import tirx

    return int(expr.value) if isinstance(expr, tirx.IntImm) else None


def llvm_target_has(func: Any, feature: str) -> bool:
    """Whether `func` is compiled for an LLVM target with the CPU `feature` (``avx512f``, ...)."""
    from tvm.target.codegen import target_has_features

    target = func.attrs.get("target") if func.attrs is not None else None
    return target is not None and target.kind.name == "llvm" and target_has_features(feature, target)


def bindings_of(body: Any) -> dict:
    """The values of the variables that `Bind` statements in `body` define (TVM's common
    subexpressions), each in terms of loop variables only."""
    import tvm_ffi
    from tvm import tirx

    values: dict = {}
    tvm_ffi.structural_walk(body, ((tirx.Bind, lambda bind: values.__setitem__(bind.var, bind.value)),))
    resolved: dict = {}

    def resolve(expr):
        def value_of(var):
            if var in values:
                if var not in resolved:
                    resolved[var] = resolve(values[var])
                return resolved[var]
            return var

        return tvm_ffi.structural_map(expr, [(tirx.Var, value_of)])

    return {var: resolve(var) for var in values}
