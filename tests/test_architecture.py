"""The shape of the code: no import cycles, schedule rules that say "not mine", the generic fallback."""

import ast
import dataclasses
import importlib
import pkgutil
from pathlib import Path

import numpy as np
import pytest

import dwc_compiler as dwc
from dwc_compiler.ops.compare import max_relative_error
from dwc_compiler.ops.primfunc import prim_func
from dwc_compiler.targets import resolve_target

from helpers import random_inputs


def _modules() -> dict[str, Path]:
    """Every module of the installed package (schedules, targets and cli included) and its file."""
    found = {"dwc_compiler": Path(dwc.__file__)}
    # schedules/, targets/ and cli/ are installed as subpackages from folders of their own.
    packages = [dwc] + [importlib.import_module(f"dwc_compiler.{name}") for name in ("schedules", "targets", "cli")]
    for package in packages:
        found[package.__name__] = Path(package.__file__)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            if getattr(module, "__file__", None):
                found[info.name] = Path(module.__file__)
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules `name` imports anywhere in its file, functions included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        edges.update(target for target in targets if target in known and target != name)
    return edges


def test_no_import_cycles():
    """No module of the package imports, directly or through others, a module that imports it
    back: the import graph (imports inside functions included) has no cycle."""
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(name, stack):
        state[name] = 1
        for neighbour in sorted(graph[name]):
            if state.get(neighbour) == 1:
                cycles.append(stack[stack.index(neighbour):] + [neighbour])
            elif neighbour not in state:
                visit(neighbour, stack + [neighbour])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert len(modules) > 30 and not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_rules_say_not_mine_for_other_families():
    """Each family rule returns None for another family's target (dlight's protocol)."""
    from dwc_compiler.schedules import arm, cuda, generic, x86

    spec = dwc.DepthwiseSpec.create((1, 8, 8, 16), (3, 3, 16, 1), 1, "SAME")
    func = prim_func(spec)
    assert x86.apply(func, spec, resolve_target("aarch64-neon")) is None
    assert arm.apply(func, spec, resolve_target("x86-avx2")) is None
    assert cuda.apply(func, spec, resolve_target("x86-avx2")) is None
    assert generic.apply(func, spec, resolve_target("cuda-sm90")) is None
    assert x86.apply(func, spec, resolve_target("x86-avx2")) is not None


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_generic_rule_takes_a_cpu_family_without_a_rule(data_format):
    """A CPU target of a family dwc has no rule for falls back to the generic rule, whose kernels
    are correct (epilogue and multiplier included)."""
    target = dataclasses.replace(resolve_target("x86-avx2"), name="x86-unknown-family", family="riscv-like",
                                 records_target=None)
    shape = (1, 9, 9, 8) if data_format == "NHWC" else (1, 8, 9, 9)
    spec = dwc.DepthwiseSpec.create(shape, (3, 3, 8, 2), 2, "SAME", data_format, with_bias=True, activation="relu6")
    kernel = dwc.build(spec, target)
    assert kernel.schedule == "hand:generic"
    inputs = random_inputs(spec)
    assert max_relative_error(kernel(*inputs), spec.reference(*inputs)) < 1e-5


def test_runtime_is_chosen_by_target_kind():
    """One runtime per kind: native for this CPU, emulated for aarch64 here, CUDA for GPUs."""
    import platform

    from dwc_compiler.runtime import runtime_for

    assert runtime_for(resolve_target("host")).name == "native"
    assert runtime_for(resolve_target("cuda-sm90")).name == "cuda"
    if platform.machine() == "x86_64":
        assert runtime_for(resolve_target("aarch64-neon")).name == "emulated"
