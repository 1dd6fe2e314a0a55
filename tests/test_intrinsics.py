"""The fast import of MetaSchedule's tensor intrinsics: the same frames for TVMScript, the same functions."""

import functools
import inspect
import sys

from dwc_compiler.tuning.intrinsics import frames_from_here, import_tensor_intrinsics


def _stack_with(take):
    """The stack `take` gives, called from this line (and from code that has no source file)."""
    scope = {"take": take}
    exec(compile("frames = take()", "<no source>", "exec"), scope)  # noqa: S102 (a frame without source)
    return scope["frames"]


def test_frames_are_those_inspect_stack_gives():
    """Frame by frame: the same frame objects' files, lines, functions and source lines (one,
    and three around the line), None where the code has no source file."""
    for context in (1, 3):
        ours = _stack_with(functools.partial(frames_from_here, context))
        theirs = _stack_with(functools.partial(inspect.stack, context))
        assert len(ours) == len(theirs)
        assert ours[0].code_context is None is theirs[0].code_context and ours[0].filename == "<no source>"
        # ours[2] and theirs[2] are this test at its two calls: the same but for the line
        assert (ours[2].filename, ours[2].function) == (theirs[2].filename, theirs[2].function)
        for got, expected in (pair for index, pair in enumerate(zip(ours, theirs)) if index != 2):
            assert (got.filename, got.lineno, got.function) == (expected.filename, expected.lineno, expected.function)
            assert (got.code_context, got.index) == (expected.code_context, expected.index)
        assert ours[1].code_context and len(ours[1].code_context) == context


def test_tvmscript_parses_the_same_functions_with_either_stack(monkeypatch):
    """A TVMScript function parsed while inspect.stack is frames_from_here is structurally the
    function parsed with inspect's own."""
    import tvm_ffi
    from tvm.script import tirx as T

    def parse():
        @T.prim_func
        def scale(a: T.Buffer((8,), "float32"), b: T.Buffer((8,), "float32")):
            for i in range(8):
                b[i] = a[i] * T.float32(2)
        return scale

    expected = parse()
    monkeypatch.setattr(inspect, "stack", frames_from_here)
    assert tvm_ffi.structural_equal(parse(), expected)


def test_import_registers_the_intrinsics_and_restores_inspect():
    """After the import, MetaSchedule finds its intrinsics, and inspect.stack is inspect's again."""
    import tvm

    original = inspect.stack
    import_tensor_intrinsics()
    assert inspect.stack is original
    assert "tvm.s_tir.tensor_intrin" in sys.modules
    assert tvm.s_tir.TensorIntrin.get("dot_16x4_vnni") is not None
