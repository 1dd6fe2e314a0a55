"""The TVM Relax pass: models imported from PyTorch (and ONNX) with their depthwise convolutions
routed to dwc kernels, built with tvm.compile for x86 (run here), aarch64 (run under qemu) and
sm_90 (built here), against PyTorch's output."""

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import tvm  # noqa: E402
from tvm import relax  # noqa: E402
from tvm.relax.frontend.torch import from_exported_program  # noqa: E402

import dwc_compiler.relax as dwc_relax  # noqa: E402
from dwc_compiler.ops.compare import max_relative_error  # noqa: E402

from helpers import rpc_tracker_with_server  # noqa: E402
from test_torch import small_mobilenet  # noqa: E402


def _calls(mod, op_name):
    found = []
    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, lambda node: found.append(node) if isinstance(node, relax.Call)
                                            and isinstance(node.op, tvm.ir.Op) and node.op.name == op_name else None)
    return found


@pytest.fixture(scope="module")
def model():
    """SmallMobileNet in eval mode with non-trivial BatchNorm statistics."""
    return small_mobilenet()


def _imported(model, batch, unwrap=False):
    data = torch.randn(batch, 3, 33, 31)
    program = torch.export.export(model, (data,))
    return from_exported_program(program, keep_params_as_input=False, unwrap_unit_return_tuple=unwrap), data


@pytest.mark.parametrize("batch", [1, 3])
def test_offloaded_model_equals_pytorch_on_x86(model, batch):
    """Every grouped conv2d becomes a dwc call_tir: each block's depthwise conv -> BatchNorm ->
    ReLU6 -> 1x1 conv -> bias -> BatchNorm one separable kernel (dwc_sep_...), the lone depthwise
    conv a depthwise one (dwc_dw_...); the stem conv stays TVM's. The compiled model's output
    equals PyTorch's (batch 1 and 3)."""
    mod, data = _imported(model, batch)
    assert sum(int(call.attrs.groups) > 1 for call in _calls(mod, "relax.nn.conv2d")) == 4
    offloaded = dwc_relax.offload_depthwise(mod, "host")
    assert [int(call.attrs.groups) for call in _calls(offloaded, "relax.nn.conv2d")] == [1]  # the stem
    kernels = sorted(gv.name_hint for gv in offloaded.functions if gv.name_hint.startswith("dwc_"))
    assert sum(name.startswith("dwc_sep_") for name in kernels) == 3
    assert sum(name.startswith("dwc_dw_") for name in kernels) == 1
    assert not _calls(offloaded, "relax.nn.batch_norm")  # each folded into its kernel
    executable = tvm.compile(offloaded, target=dwc_relax.tvm_target("host"))
    machine = relax.VirtualMachine(executable, tvm.cpu())
    actual = machine["main"](tvm.runtime.tensor(data.numpy()))[0].numpy()
    with torch.no_grad():
        expected = model(data).numpy()
    assert max_relative_error(actual, expected) < 1e-5


def test_depthwise_only_offload_keeps_the_pointwise_convs(model):
    """With fuse_pointwise=False each depthwise conv (with its BatchNorm folded and its ReLU6)
    is a depthwise kernel of its own and the 1x1 convs stay TVM's; the output equals PyTorch's."""
    mod, data = _imported(model, 1)
    offloaded = dwc_relax.offload_depthwise(mod, "host", fuse_pointwise=False)
    kernels = [gv.name_hint for gv in offloaded.functions if gv.name_hint.startswith("dwc_")]
    assert len(kernels) == 4 and all(name.startswith("dwc_dw_") for name in kernels)
    assert sorted(int(call.attrs.groups) for call in _calls(offloaded, "relax.nn.conv2d")) == [1, 1, 1, 1]
    assert len(_calls(offloaded, "relax.clip")) == 0
    executable = tvm.compile(offloaded, target=dwc_relax.tvm_target("host"))
    actual = relax.VirtualMachine(executable, tvm.cpu())["main"](tvm.runtime.tensor(data.numpy()))[0].numpy()
    with torch.no_grad():
        assert max_relative_error(actual, model(data).numpy()) < 1e-5


def test_kernels_for_tvm_compile_rest_on_no_dwc_pass(model):
    """tvm.compile runs TVM's TIR pipeline, not dwc's: the offloaded NCHW depthwise and separable
    kernels copy each padded plane or row (a pad block of their own) rather than read vectors of
    the input under the masks only dwc's pass makes; the same spec built by dwc reads them under
    masks."""
    import tvm_ffi

    import dwc_compiler as dwc

    mod, _ = _imported(model, 1)
    for fuse_pointwise, prefix, count in ((False, "dwc_dw_", 4), (True, "dwc_sep_", 3)):
        offloaded = dwc_relax.offload_depthwise(mod, "x86-avx512", fuse_pointwise=fuse_pointwise)
        kernels = [(gv, func) for gv, func in offloaded.functions.items() if gv.name_hint.startswith(prefix)]
        assert len(kernels) == count
        for gv, func in kernels:
            blocks = []
            tvm_ffi.structural_walk(func, ((tvm.s_tir.SBlock, lambda block: blocks.append(block.name_hint)),))
            assert any(name.startswith("pad") for name in blocks), (gv.name_hint, blocks)
    spec = dwc.DepthwiseSpec.create((1, 16, 17, 16), (3, 3, 16, 1), 1, "SAME", "NCHW")
    assert "@llvm.masked.load" in dwc.build(spec, "x86-avx512").inspect_source("ll")


def test_weight_relayout_and_batchnorm_folding_happen_at_build_time(model):
    """The Relax ops the pass adds to fold BatchNorms and relay the weights into TF's layouts act
    on the model's constant weights only: TVM's FoldConstant (in its default pipeline) leaves
    none of them to run per call."""
    mod, _ = _imported(model, 1)
    offloaded = dwc_relax.offload_depthwise(mod, "host")
    folded = relax.transform.FoldConstant()(relax.transform.LegalizeOps()(offloaded))
    remaining = [call.args[0].name_hint for call in _calls(folded, "relax.call_tir")
                 if not call.args[0].name_hint.startswith("dwc_")]
    kernel_calls = [call for call in _calls(folded, "relax.call_tir") if call.args[0].name_hint.startswith("dwc_")]
    assert len(kernel_calls) == 4
    # Every operand of a dwc kernel but its input is a constant.
    assert all(isinstance(arg, tvm.ir.expr.Constant) for call in kernel_calls for arg in call.args[1].fields[1:])
    assert not [name for name in remaining if any(word in name for word in ("rsqrt", "transpose", "multiply"))]


def test_bias_and_activation_fused_into_the_kernel():
    """conv2d -> add(bias) -> clip(0, 6) becomes one dwc kernel with the bias and ReLU6 inside;
    conv2d -> relu becomes one with ReLU; a conv2d whose result has two users is fused with nothing."""
    class Fusable(nn.Module):
        def __init__(self):
            super().__init__()
            self.first = nn.Conv2d(8, 16, 3, 1, 1, groups=8)
            self.second = nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False)
            self.third = nn.Conv2d(16, 16, 3, 2, 1, groups=16)

        def forward(self, x):
            y = torch.relu(self.second(nn.functional.relu6(self.first(x))))
            z = self.third(y)
            return z + torch.relu(z)

    network = Fusable().eval()
    data = torch.randn(1, 8, 12, 12)
    mod = from_exported_program(torch.export.export(network, (data,)), keep_params_as_input=False)
    offloaded = dwc_relax.offload_depthwise(mod, "host")
    kernels = {gv.name_hint: func for gv, func in offloaded.functions.items() if gv.name_hint.startswith("dwc_")}
    scripts = sorted(func.script() for func in kernels.values())
    assert len(kernels) == 3
    assert sum("T.float32(6.0)" in script for script in scripts) == 1  # the ReLU6 of the first conv
    assert sum("bias" in script for script in scripts) == 2  # first and third have a bias
    assert len(_calls(offloaded, "relax.clip")) == 0 and len(_calls(offloaded, "relax.nn.relu")) == 1
    executable = tvm.compile(offloaded, target=dwc_relax.tvm_target("host"))
    actual = relax.VirtualMachine(executable, tvm.cpu())["main"](tvm.runtime.tensor(data.numpy()))[0].numpy()
    with torch.no_grad():
        assert max_relative_error(actual, network(data).numpy()) < 1e-5


def test_onnx_models_are_offloaded_too():
    """A model from tvm.relax.frontend.onnx.from_onnx: its grouped Conv runs on dwc."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from tvm.relax.frontend.onnx import from_onnx

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((24, 1, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(24).astype(np.float32)
    nodes = [helper.make_node("Conv", ["X", "W", "B"], ["C"], group=12, strides=[2, 2], pads=[1, 1, 1, 1],
                              kernel_shape=[3, 3]),
             helper.make_node("Relu", ["C"], ["Y"])]
    graph = helper.make_graph(nodes, "dw", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 12, 10, 10])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 24, 5, 5])],
                              initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    offloaded = dwc_relax.offload_depthwise(from_onnx(model, keep_params_in_input=False), "host")
    assert [gv.name_hint for gv in offloaded.functions if gv.name_hint.startswith("dwc_")]
    data = rng.standard_normal((1, 12, 10, 10)).astype(np.float32)
    executable = tvm.compile(offloaded, target=dwc_relax.tvm_target("host"))
    output = relax.VirtualMachine(executable, tvm.cpu())["main"](tvm.runtime.tensor(data))
    actual = (output[0] if not hasattr(output, "numpy") else output).numpy()
    expected = np.maximum(torch.nn.functional.conv2d(torch.from_numpy(data), torch.from_numpy(weight),
                                                     torch.from_numpy(bias), 2, 1, groups=12).numpy(), 0)
    assert max_relative_error(actual, expected) < 1e-5


def test_builds_for_cuda_sm90(model):
    """The offloaded model builds for cuda-sm90: dwc's kernels (thread-bound, shared memory) are
    in the CUDA module beside TVM's own for the rest of the model. A dwc CUDA build first: its
    compile hook must not be left in place for other builds."""
    import shutil

    import dwc_compiler as dwc

    if shutil.which("nvcc") is None:
        pytest.skip("CUDA builds need nvcc")
    import tvm_ffi

    before = tvm_ffi.get_global_func("tvm_callback_cuda_compile", allow_missing=True)
    dwc.build(dwc.DepthwiseSpec.create((1, 8, 8, 16), (3, 3, 16, 1), 1, "SAME"), "cuda-sm90")
    after = tvm_ffi.get_global_func("tvm_callback_cuda_compile", allow_missing=True)
    assert (before is None and after is None) or (before is not None and after.same_as(before))
    mod, _ = _imported(model, 1)
    offloaded = dwc_relax.offload_depthwise(mod, "cuda-sm90")
    executable = dwc_relax.compile(offloaded, "cuda-sm90")  # nvcc, as dwc's own builds (no NVRTC here)
    sources = []

    def collect(module):
        if module.kind == "cuda":
            sources.append(module.inspect_source("cuda"))
        for imported in module.imports:
            collect(imported)

    collect(executable.mod)
    source = "\n".join(sources)
    assert source.count("dwc_dw_") >= 1 and source.count("dwc_sep_") >= 3
    assert "__shared__" in source and "threadIdx.x" in source


def test_builds_for_aarch64_and_runs_under_qemu(model, tmp_path):
    """The offloaded model, built for aarch64-neon and linked with the cross compiler, runs in the
    aarch64 TVM runtime's Relax VM under qemu (through dwc's qemu RPC server) and equals PyTorch."""
    import tvm.support.cc

    mod, data = _imported(model, 1, unwrap=True)  # a tensor, not a tuple, comes back over RPC
    offloaded = dwc_relax.offload_depthwise(mod, "aarch64-neon")
    executable = tvm.compile(offloaded, target=dwc_relax.tvm_target("aarch64-neon"))
    library = tmp_path / "model.so"
    executable.export_library(str(library), fcompile=tvm.support.cc.cross_compiler("aarch64-linux-gnu-gcc"))
    server = [sys.executable, "-m", "dwc_compiler.rpc_qemu", "--key", "dwc-relax"]
    with rpc_tracker_with_server(lambda tracker: [*server, "--tracker", tracker]) as tracker:
        host, port = tracker.rsplit(":", 1)
        remote = tvm.rpc.connect_tracker(host, int(port)).request("dwc-relax", session_timeout=600)
        remote.upload(str(library))
        machine = relax.VirtualMachine(remote.load_module("model.so"), remote.cpu())
        actual = machine["main"](tvm.runtime.tensor(data.numpy(), device=remote.cpu())).numpy()
        del machine, remote
    with torch.no_grad():
        assert max_relative_error(actual, model(data).numpy()) < 1e-5
