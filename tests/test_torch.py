"""The PyTorch integration: ``torch.ops.dwc.depthwise_conv2d`` and ``replace_depthwise`` against
PyTorch's own modules, in both memory formats, through ``torch.export`` and ``torch.compile``."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
functional = torch.nn.functional

import dwc_compiler.torch as dwc_torch  # noqa: E402  (needs torch)
from dwc_compiler.ops.compare import max_relative_error  # noqa: E402


def _block(in_channels, multiplier, kernel, stride, dilation, bias, out_channels):
    """Depthwise conv -> BatchNorm -> ReLU6 -> 1x1 conv -> BatchNorm (MobileNetV2's pattern)."""
    channels = in_channels * multiplier
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, kernel, stride, padding=dilation * (kernel // 2), dilation=dilation,
                  groups=in_channels, bias=bias),
        nn.BatchNorm2d(channels), nn.ReLU6(inplace=True), nn.Conv2d(channels, out_channels, 1),
        nn.BatchNorm2d(out_channels))


class SmallMobileNet(nn.Module):
    """A MobileNetV2-style network covering stride 2, a 5x5 window, dilation 2, multiplier 2,
    depthwise convs with and without bias, with BatchNorm + ReLU6 after them, and one plain
    depthwise conv outside any Sequential (followed by a ReLU the swap cannot see)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 2, 1)
        self.blocks = nn.Sequential(_block(16, 1, 3, 1, 1, False, 24), _block(24, 2, 5, 2, 1, True, 32),
                                    _block(32, 1, 3, 1, 2, False, 32))
        self.tail = nn.Conv2d(32, 32, 3, 2, 1, groups=32)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.tail(self.blocks(self.stem(x))))


def small_mobilenet():
    """SmallMobileNet in eval mode with non-trivial BatchNorm statistics and affine parameters."""
    torch.manual_seed(0)
    model = SmallMobileNet().eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return model


@pytest.fixture(scope="module")
def models():
    """(PyTorch's eval-mode model, its dwc-swapped copy with each block's depthwise and pointwise
    convs fused: the default)."""
    model = small_mobilenet()
    return model, dwc_torch.replace_depthwise(copy.deepcopy(model))


@pytest.fixture(scope="module")
def depthwise_only_models():
    """(PyTorch's eval-mode model, its copy with the depthwise convs alone swapped)."""
    model = small_mobilenet()
    return model, dwc_torch.replace_depthwise(copy.deepcopy(model), fuse_pointwise=False)


@pytest.mark.parametrize("fused", [True, False], ids=["separable", "depthwise-only"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("channels_last", [False, True], ids=["NCHW", "channels_last"])
def test_replaced_model_equals_pytorch(request, fused, batch, channels_last):
    """The swapped model, fused or not, gives PyTorch's output on NCHW and channels_last input,
    batch 1 and 3, and keeps the memory format through dwc's layers."""
    model, replaced = request.getfixturevalue("models" if fused else "depthwise_only_models")
    data = torch.randn(batch, 3, 33, 31)
    if channels_last:
        data = data.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected, actual = model(data), replaced(data)
    assert max_relative_error(actual.numpy(), expected.numpy()) < 1e-5
    assert actual.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_each_block_becomes_one_separable_kernel(models):
    """By default each block's depthwise conv -> BatchNorm -> ReLU6 -> 1x1 conv -> BatchNorm is one
    fused SeparableConv2d (BatchNorms folded into the biases, the rest Identity); the depthwise
    conv outside a Sequential is swapped alone; the stem conv is untouched."""
    _, replaced = models
    assert not [m for m in replaced.modules() if type(m) is nn.Conv2d and m.groups == m.in_channels > 1]
    for block in replaced.blocks:
        assert isinstance(block[0], dwc_torch.SeparableConv2d)
        assert (block[0].depthwise_activation, block[0].pointwise_activation) == ("relu6", "none")
        assert block[0].depthwise_bias is not None and block[0].pointwise_bias is not None
        assert all(isinstance(module, nn.Identity) for module in list(block)[1:])
    assert [tuple(block[0].pointwise_filter.shape) for block in replaced.blocks] == [
        (1, 1, 16, 24), (1, 1, 48, 32), (1, 1, 32, 32)]
    assert isinstance(replaced.tail, dwc_torch.DepthwiseConv2d) and type(replaced.stem) is nn.Conv2d


def test_every_depthwise_conv_swapped_and_batchnorm_relu6_folded(depthwise_only_models):
    """With fuse_pointwise=False no depthwise nn.Conv2d is left; in each block the BatchNorm and
    ReLU6 after the depthwise conv became Identity (folded into the kernel); the 1x1 convs and
    other modules are untouched."""
    _, replaced = depthwise_only_models
    assert not [m for m in replaced.modules() if type(m) is nn.Conv2d and m.groups == m.in_channels > 1]
    swapped = [m for m in replaced.modules() if isinstance(m, dwc_torch.DepthwiseConv2d)]
    assert len(swapped) == 4
    assert [m.activation for m in swapped] == ["relu6", "relu6", "relu6", "none"]
    assert all(m.bias is not None for m in swapped[:3]) and swapped[3].bias is not None
    for block in replaced.blocks:
        assert isinstance(block[1], nn.Identity) and isinstance(block[2], nn.Identity)
        assert type(block[3]) is nn.Conv2d and isinstance(block[4], nn.BatchNorm2d)


def test_training_mode_batchnorm_is_not_folded():
    """A BatchNorm in training mode (batch statistics) stays a module after the swapped conv."""
    block = _block(8, 1, 3, 1, 1, False, 8).train()
    dwc_torch.replace_depthwise(block)
    assert isinstance(block[0], dwc_torch.DepthwiseConv2d) and isinstance(block[1], nn.BatchNorm2d)
    assert block[0].activation == "none" and isinstance(block[2], nn.ReLU6)


def test_export_traces_through_the_op(models):
    """torch.export of the swapped model succeeds (the ops' fake implementations give shapes), the
    graph calls dwc.separable_conv2d for the blocks and dwc.depthwise_conv2d for the lone depthwise
    conv, and the exported program computes the same output."""
    model, replaced = models
    data = torch.randn(1, 3, 33, 31)
    program = torch.export.export(replaced, (data,))
    targets = [str(node.target) for node in program.graph.nodes if node.op == "call_function"]
    assert sum("dwc.separable_conv2d" in target for target in targets) == 3
    assert sum("dwc.depthwise_conv2d" in target for target in targets) == 1
    with torch.no_grad():
        assert max_relative_error(program.module()(data).numpy(), model(data).numpy()) < 1e-5


def test_compile_traces_through_the_op(models):
    """torch.compile (the AOT-autograd tracer, without a C++ toolchain) runs the swapped model."""
    model, replaced = models
    data = torch.randn(2, 3, 33, 31)
    compiled = torch.compile(replaced, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        assert max_relative_error(compiled(data).numpy(), model(data).numpy()) < 1e-5


@pytest.mark.parametrize("activation", ["none", "relu", "relu6"])
def test_op_matches_functional_conv2d(activation):
    """The op alone: unequal strides, multiplier 3, dilation, bias, each activation, float64."""
    generator = torch.Generator().manual_seed(1)
    data = torch.randn(2, 4, 15, 12, generator=generator, dtype=torch.float64)
    weight = torch.randn(12, 1, 3, 3, generator=generator, dtype=torch.float64)
    bias = torch.randn(12, generator=generator, dtype=torch.float64)
    expected = functional.conv2d(data, weight, bias, (2, 1), (1, 2), (1, 2), groups=4)
    expected = {"none": expected, "relu": functional.relu(expected), "relu6": functional.relu6(expected)}[activation]
    actual = torch.ops.dwc.depthwise_conv2d(data, weight, bias, [2, 1], [1, 2], [1, 2], activation)
    assert actual.shape == expected.shape and actual.dtype == torch.float64
    assert max_relative_error(actual.numpy(), expected.numpy()) < 1e-12


def test_op_refuses_bad_arguments_by_name():
    """A weight for the wrong channel count or a bad stride names the parameter."""
    import dwc_compiler as dwc

    data = torch.randn(1, 4, 8, 8)
    with pytest.raises(dwc.DwcError, match="^filter shape"):
        torch.ops.dwc.depthwise_conv2d(data, torch.randn(6, 1, 3, 3), None, [1], [1], [1])
    with pytest.raises(dwc.DwcError, match="^stride"):
        torch.ops.dwc.depthwise_conv2d(data, torch.randn(4, 1, 3, 3), None, [1, 1, 1], [1], [1])
    assert np.isfinite(torch.ops.dwc.depthwise_conv2d(data, torch.randn(4, 1, 3, 3), None, [1], [1], [1]).numpy()).all()


@pytest.mark.parametrize("activations", [("none", "none"), ("relu6", "none"), ("relu", "relu6")])
@pytest.mark.parametrize("channels_last", [False, True], ids=["NCHW", "channels_last"])
def test_separable_op_matches_two_functional_convs(activations, channels_last):
    """torch.ops.dwc.separable_conv2d equals the depthwise F.conv2d (multiplier 2, stride (2, 1),
    padding (1, 2), biases) then the 1x1 F.conv2d, with each step's activation, float64."""
    generator = torch.Generator().manual_seed(2)
    data = torch.randn(2, 4, 15, 12, generator=generator, dtype=torch.float64)
    if channels_last:
        data = data.contiguous(memory_format=torch.channels_last)
    depthwise_weight = torch.randn(8, 1, 3, 5, generator=generator, dtype=torch.float64)
    pointwise_weight = torch.randn(6, 8, 1, 1, generator=generator, dtype=torch.float64)
    depthwise_bias, pointwise_bias = (torch.randn(n, generator=generator, dtype=torch.float64) for n in (8, 6))
    functions = {"none": lambda t: t, "relu": functional.relu, "relu6": functional.relu6}
    middle = functions[activations[0]](functional.conv2d(data, depthwise_weight, depthwise_bias, (2, 1), (1, 2),
                                                         groups=4))
    expected = functions[activations[1]](functional.conv2d(middle, pointwise_weight, pointwise_bias))
    module = dwc_torch.SeparableConv2d(depthwise_weight, depthwise_bias, pointwise_weight, pointwise_bias, 4, (2, 1),
                                       (1, 2), (1, 1), *activations)
    actual = module(data)
    assert actual.shape == expected.shape and actual.dtype == torch.float64
    assert actual.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert max_relative_error(actual.numpy(), expected.numpy()) < 1e-12


def test_strided_dilated_depthwise_conv_is_not_fused():
    """A depthwise conv with a stride and a dilation above 1 (PyTorch allows it, TF's separable
    convolution does not) is swapped alone; the 1x1 conv after it stays PyTorch's."""
    block = _block(8, 1, 3, 2, 2, False, 8).eval()
    dwc_torch.replace_depthwise(block)
    assert isinstance(block[0], dwc_torch.DepthwiseConv2d) and type(block[3]) is nn.Conv2d


def test_channels_last_model_keeps_kernel_weights_contiguous(models):
    """model.to(memory_format=torch.channels_last) relays every 4-D parameter; dwc's modules keep
    theirs C-contiguous, so no call copies a weight and every output buffer is reused from one
    forward to the next (none allocated after the first)."""
    from dwc_compiler.runtime import outputs

    _, replaced = models
    converted = copy.deepcopy(replaced).to(memory_format=torch.channels_last)
    swapped = [m for m in converted.modules() if isinstance(m, (dwc_torch.DepthwiseConv2d, dwc_torch.SeparableConv2d))]
    assert swapped and all(p.is_contiguous() for m in swapped for p in m.parameters())
    data = torch.randn(1, 3, 33, 31).contiguous(memory_format=torch.channels_last)
    allocations = []
    original = outputs.empty_aligned

    def counted(*args):
        allocations.append(args)
        return original(*args)

    with torch.inference_mode():
        converted(data)
        outputs.empty_aligned = counted
        try:
            converted(data)
        finally:
            outputs.empty_aligned = original
    assert allocations == []


def test_jit_trace_records_the_ops(models):
    """torch.jit.trace of the swapped model records dwc's ops (the eager shortcut past PyTorch's
    dispatch is not taken while tracing), and the traced module is right on a new input."""
    model, replaced = models
    with torch.no_grad():
        traced = torch.jit.trace(replaced, (torch.randn(1, 3, 33, 31),))
        kinds = [node.kind() for node in traced.inlined_graph.nodes()]
        assert kinds.count("dwc::separable_conv2d") == 3 and kinds.count("dwc::depthwise_conv2d") == 1
        data = torch.randn(1, 3, 33, 31)
        assert max_relative_error(traced(data).numpy(), model(data).numpy()) < 1e-5


def test_eager_module_follows_its_settings_weights_and_inputs():
    """The eager forward keeps one kernel per input signature: changing the module's stride or
    activation, its weights (in place, as load_state_dict does, or by .double()), or the input's
    memory format, dtype or contiguity gives the result PyTorch's conv gives for the new state."""
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, 1, 1, groups=8).eval()
    module = dwc_torch.replace_depthwise(nn.Sequential(copy.deepcopy(conv)))[0]

    def check(data, reference_conv, activation=lambda y: y):
        expected = activation(reference_conv(data))
        result = module(data)
        assert result.shape == expected.shape and result.dtype == expected.dtype
        assert result.is_contiguous(memory_format=torch.channels_last) == dwc_torch._is_channels_last(data)
        assert max_relative_error(result.numpy(), expected.numpy()) < 1e-5

    with torch.no_grad():
        data = torch.randn(2, 8, 9, 11)
        check(data, conv)
        check(data.contiguous(memory_format=torch.channels_last), conv)
        check(data[:, :, :, 1:], conv)  # not contiguous: copied by the kernel's checked call
        module.stride, conv.stride = [2, 2], (2, 2)
        check(data, conv)
        module.activation = "relu6"
        check(data, conv, functional.relu6)
        update = {"weight": torch.randn(16, 1, 3, 3), "bias": torch.randn(16)}
        module.load_state_dict(update)
        conv.load_state_dict(update)
        check(data, conv, functional.relu6)
        module.double()
        check(data.double(), conv.double(), functional.relu6)
    check(torch.randn(1, 8, 9, 11, dtype=torch.float64, requires_grad=True).detach().requires_grad_(), conv,
          lambda y: functional.relu6(y).detach())


def test_module_names_a_wrong_input():
    """A tensor on another device, or with other channels than the replaced conv took (which
    the op alone would read as a channel multiplier), is refused by name, as PyTorch refuses it."""
    import dwc_compiler as dwc

    conv = nn.Conv2d(8, 8, 3, 1, 1, groups=8).eval()
    module = dwc_torch.replace_depthwise(nn.Sequential(copy.deepcopy(conv)))[0]
    assert module.in_channels == 8
    with pytest.raises(dwc.InvalidArgumentError, match="input: .*CPU tensors, got one on meta"):
        module(torch.empty(1, 8, 5, 5, device="meta"))
    with pytest.raises(RuntimeError):
        conv(torch.randn(1, 4, 5, 5))
    with pytest.raises(dwc.InvalidArgumentError, match="input: expected 8 channels .*got 4"):
        module(torch.randn(1, 4, 5, 5))
    with torch.no_grad(), pytest.raises(dwc.InvalidArgumentError, match="input: expected 8 channels"):
        torch.jit.trace(module, (torch.randn(1, 4, 5, 5),))
    separable = dwc_torch.replace_depthwise(_block(8, 1, 3, 1, 1, False, 8).eval())[0]
    assert isinstance(separable, dwc_torch.SeparableConv2d)
    with pytest.raises(dwc.InvalidArgumentError, match="input: expected 8 channels .*got 16"):
        separable(torch.randn(1, 16, 5, 5))


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "torchvision-nested"])
def test_a_sequential_block_is_folded_and_fused_itself(nested):
    """replace_depthwise on an nn.Sequential block itself (not one inside a model) folds and
    fuses its layers, flat as dwc's MobileNetV2 has them or nested as torchvision's
    (Conv2dNormActivation(depthwise conv, BN, ReLU6), then the 1x1 conv and BN beside it): the
    block becomes one SeparableConv2d and computes what PyTorch computes."""
    if nested:
        block = nn.Sequential(nn.Sequential(nn.Conv2d(8, 8, 3, 2, 1, groups=8, bias=False), nn.BatchNorm2d(8),
                                            nn.ReLU6(inplace=True)),
                              nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16)).eval()
    else:
        block = _block(8, 1, 3, 1, 1, True, 16).eval()
    for norm in (module for module in block.modules() if isinstance(module, nn.BatchNorm2d)):
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
    data = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        expected = block(data)
        replaced = dwc_torch.replace_depthwise(copy.deepcopy(block))
        assert isinstance(replaced[0], dwc_torch.SeparableConv2d)
        assert all(isinstance(module, nn.Identity) for module in list(replaced)[1:])
        assert max_relative_error(replaced(data).numpy(), expected.numpy()) < 1e-5


def test_a_bare_depthwise_conv_is_replaced():
    """A model that is itself a depthwise conv cannot be swapped in place: its replacement is
    returned."""
    conv = nn.Conv2d(8, 8, 3, 1, 1, groups=8).eval()
    swapped = dwc_torch.replace_depthwise(conv)
    assert isinstance(swapped, dwc_torch.DepthwiseConv2d)
    data = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        assert max_relative_error(swapped(data).numpy(), conv(data).numpy()) < 1e-5


def test_modules_pickle_warn_without_gradients_and_share_across_threads():
    """A replaced model pickles after running (the kept kernel is left out); with gradients
    wanted, the module warns that none flows back (eagerly) and torch.compile traces it; threads
    calling one module with inputs of different signatures each get their own input's result."""
    import io
    import threading
    import warnings

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU6()).eval()
    replaced = dwc_torch.replace_depthwise(copy.deepcopy(model))
    data = torch.randn(2, 3, 8, 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        eager = replaced(data)
    assert any("no gradient flows back" in str(warning.message) for warning in caught)
    compiled = torch.compile(replaced, backend="aot_eager")(data)
    assert max_relative_error(compiled.detach().numpy(), model(data).detach().numpy()) < 1e-5
    assert max_relative_error(eager.numpy(), model(data).detach().numpy()) < 1e-5
    buffer = io.BytesIO()
    torch.save(replaced, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    with torch.no_grad():
        assert max_relative_error(loaded(data).numpy(), model(data).numpy()) < 1e-5

    module = replaced[1]
    inputs = [torch.randn(1, 8, 8, 8), torch.randn(1, 8, 8, 8).contiguous(memory_format=torch.channels_last),
              torch.randn(3, 8, 8, 8)]
    with torch.no_grad():
        expected = [model[2](model[1](x)) for x in inputs]
    wrong = []

    def work(which):
        with torch.no_grad():
            for _ in range(300):
                try:
                    if max_relative_error(module(inputs[which]).numpy(), expected[which].numpy()) > 1e-5:
                        wrong.append(which)
                except Exception as exc:  # another input's kernel: a refused shape
                    wrong.append(exc)

    import sys

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can, to expose races
    try:
        threads = [threading.Thread(target=work, args=(index % 3,)) for index in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert not wrong
