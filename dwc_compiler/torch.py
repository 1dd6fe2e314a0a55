"""dwc inside PyTorch models: a registered op and a module swap (``pip install dwc[torch]``).

``torch.ops.dwc.depthwise_conv2d(input, weight, bias, stride, padding, dilation, activation)``
takes PyTorch's conventions: an NCHW tensor (contiguous or channels_last), the ``[C*M, 1, KH,
KW]`` weight of ``nn.Conv2d(groups=C)``, symmetric zero padding. CPU tensors are shared with the
kernel through their memory, not copied: a channels_last input is handed to dwc's NHWC kernel and
the output comes back channels_last, a contiguous one to the NCHW kernel. It has a fake (meta)
implementation, so ``torch.export`` and ``torch.compile`` trace through it. It computes in
inference mode (no gradient).

``torch.ops.dwc.separable_conv2d`` is TF's separable convolution as dwc's one fused kernel: the
depthwise step (bias, activation), then a 1x1 pointwise product across channels (bias,
activation), with the weights in the layouts dwc's ``separable_conv2d`` takes (``[KH, KW, C, M]``
and ``[1, 1, C*M, O]``; :class:`SeparableConv2d` converts a model's weights once).

:func:`replace_depthwise` swaps every depthwise ``nn.Conv2d`` of a model for a module calling these
ops, folding an eval-mode ``BatchNorm2d`` and a ``ReLU``/``ReLU6`` that follow it in an
``nn.Sequential`` into the kernel's bias and epilogue; where a pointwise ``nn.Conv2d`` (1x1, with
its own BatchNorm and activation) follows in the same ``nn.Sequential`` (or right after the
sequence holding just the depthwise conv, its BatchNorm and activation, as torchvision's
MobileNet blocks nest them), the two become one fused separable kernel, whose depthwise result
never reaches memory.
Kernels compile once per shape and target and are cached for the process.

PyTorch's and TVM's thread pools share the cores: each keeps its workers spinning for a while
after its own work, and on 2 cores MobileNetV2 with dwc's layers ran 0.41x PyTorch's speed at 2
threads while each pool's spinning workers held a core the other needed. Importing this module
therefore sets ``TVM_THREAD_POOL_SPIN_COUNT=0`` (unless it is set): TVM's workers sleep as soon
as a dwc kernel ends (the same run: 1.07x PyTorch's speed). It must happen before TVM's thread
pool starts, so import ``dwc_compiler.torch`` before running any dwc kernel in the process.
"""

from __future__ import annotations

import copy
import os
import warnings
from typing import Optional

import torch
from torch import nn

os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", "0")  # before TVM's pool starts: see the module doc

from .api import depthwise_conv2d as _numpy_depthwise_conv2d  # noqa: E402
from .api import depthwise_kernel as _depthwise_kernel  # noqa: E402
from .api import separable_conv2d as _numpy_separable_conv2d  # noqa: E402
from .api import separable_kernel as _separable_kernel  # noqa: E402
from .errors import InvalidArgumentError  # noqa: E402

ACTIVATION_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6"}
# The weight dtypes dwc's kernels compute.
FLOAT_DTYPES = (torch.float32, torch.float16, torch.float64)


def _output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    # PyTorch's formula, kept in plain arithmetic: under torch.export the sizes may be symbolic.
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _pair(values: list[int], parameter: str) -> tuple[int, int]:
    if len(values) == 1:
        return (values[0], values[0])
    if len(values) != 2:
        raise InvalidArgumentError(f"{parameter}: expected 1 or 2 integers (rows, cols), got {list(values)}")
    return (values[0], values[1])


def _is_channels_last(tensor: torch.Tensor) -> bool:
    """Whether `tensor` is laid out channels_last (NHWC memory) rather than contiguous NCHW."""
    return tensor.dim() == 4 and not tensor.is_contiguous() and tensor.is_contiguous(
        memory_format=torch.channels_last)


INFERENCE_ONLY = ("dwc's modules and ops compute without gradients: no gradient flows back through them "
                  "(run the model under torch.no_grad() or torch.inference_mode())")


def _warn_if_gradients_wanted(input: torch.Tensor) -> None:
    """A warning (once per place, as Python shows them) when `input` carries a gradient graph
    that dwc's output cuts."""
    if input.requires_grad and torch.is_grad_enabled():
        warnings.warn(INFERENCE_ONLY, stacklevel=3)


def _depthwise_conv2d(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: list[int],
                     padding: list[int], dilation: list[int], activation: str = "none",
                     target: str = "host") -> torch.Tensor:
    """``F.conv2d(input, weight, bias, stride, padding, dilation, groups=C)`` then `activation`
    (``"none"``, ``"relu"``, ``"relu6"``), computed by a dwc kernel for `target`.

    Args:
        input: ``[N, C, H, W]`` CPU tensor, contiguous or channels_last (float32/16/64).
        weight: ``[C*M, 1, KH, KW]``, the input's dtype.
        bias: None or ``[C*M]``.
        stride, padding, dilation: 1 or 2 integers each (PyTorch's symmetric zero padding).

    Returns:
        ``[N, C*M, OH, OW]`` in the input's memory format.
    """
    channels_last, data, geometry = _as_dwc_call(input, stride, padding, dilation)
    result = _numpy_depthwise_conv2d(data, weight.detach().contiguous(), *geometry, target,
                                     None if bias is None else bias.detach(), activation, "OIHW")
    return _from_dwc(result, channels_last)


depthwise_conv2d = torch.library.custom_op("dwc::depthwise_conv2d", mutates_args=(),
                                           device_types="cpu")(_depthwise_conv2d)


def _as_dwc_call(input: torch.Tensor, stride: list[int], padding: list[int], dilation: list[int]):
    """(channels_last, the input for dwc, (strides, explicit pads, data format, dilations)) of an
    op's PyTorch arguments: a channels_last tensor's memory, seen as a contiguous NHWC tensor,
    goes to the NHWC kernel; a contiguous one to the NCHW kernel."""
    stride_pair, padding_pair, dilation_pair = (_pair(stride, "stride"), _pair(padding, "padding"),
                                                _pair(dilation, "dilation"))
    # (top, bottom, left, right): the flat form takes the API's lean path (a nested list is unhashable).
    pads = [padding_pair[0], padding_pair[0], padding_pair[1], padding_pair[1]]
    channels_last = _is_channels_last(input)
    data = input.permute(0, 2, 3, 1) if channels_last else input.contiguous()
    return channels_last, data.detach(), (stride_pair, pads, "NHWC" if channels_last else "NCHW", dilation_pair)


def _from_dwc(result, channels_last: bool) -> torch.Tensor:
    """dwc's output as the tensor PyTorch expects: NCHW-shaped, in the input's memory format."""
    return torch.from_numpy(result.transpose(0, 3, 1, 2) if channels_last else result)


def _register_inference_only(op, argument_count: int) -> None:
    """An autograd formula for `op` that passes no gradient back (dwc computes inference only)
    and warns where a gradient was wanted: the op then traces under ``torch.compile`` with
    gradients enabled as it runs eagerly, rather than failing for want of a formula."""
    def setup_context(ctx, inputs, output):
        _warn_if_gradients_wanted(inputs[0])

    def backward(ctx, grad_output):
        return (None,) * argument_count

    op.register_autograd(backward, setup_context=setup_context)


_register_inference_only(depthwise_conv2d, 8)


@depthwise_conv2d.register_fake
def _(input, weight, bias, stride, padding, dilation, activation="none", target="host"):
    out_channels, _, kernel_rows, kernel_cols = weight.shape
    return _fake_output(input, out_channels, (kernel_rows, kernel_cols), stride, padding, dilation)


def _fake_output(input: torch.Tensor, out_channels: int, window: tuple[int, int], stride: list[int],
                 padding: list[int], dilation: list[int]) -> torch.Tensor:
    """An empty tensor of an op's output: its shape (PyTorch's formula) and the input's memory format."""
    (stride_rows, stride_cols), (pad_rows, pad_cols), (dilation_rows, dilation_cols) = (
        _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation"))
    batch, _, height, width = input.shape
    shape = (batch, out_channels, _output_size(height, window[0], stride_rows, pad_rows, dilation_rows),
             _output_size(width, window[1], stride_cols, pad_cols, dilation_cols))
    return torch.empty(shape, dtype=input.dtype, device=input.device,
                       memory_format=torch.channels_last if _is_channels_last(input) else torch.contiguous_format)


def _separable_conv2d(input: torch.Tensor, depthwise_filter: torch.Tensor, pointwise_filter: torch.Tensor,
                     depthwise_bias: Optional[torch.Tensor], pointwise_bias: Optional[torch.Tensor],
                     stride: list[int], padding: list[int], dilation: list[int], depthwise_activation: str = "none",
                     pointwise_activation: str = "none", target: str = "host") -> torch.Tensor:
    """A depthwise ``F.conv2d(groups=C)`` with bias and `depthwise_activation`, then a 1x1
    ``F.conv2d`` with bias and `pointwise_activation`, as one fused dwc kernel for `target`
    (the depthwise result stays in the cache).

    Args:
        input: ``[N, C, H, W]`` CPU tensor, contiguous or channels_last (float32/16/64).
        depthwise_filter: ``[KH, KW, C, M]`` (TF's layout, as dwc's separable op takes it).
        pointwise_filter: ``[1, 1, C*M, O]``.
        depthwise_bias: None or ``[C*M]``; pointwise_bias: None or ``[O]``.
        stride, padding, dilation: the depthwise step's, 1 or 2 integers each (symmetric zero
            padding; dilations above 1 need strides of 1, TF's rule).

    Returns:
        ``[N, O, OH, OW]`` in the input's memory format.
    """
    channels_last, data, geometry = _as_dwc_call(input, stride, padding, dilation)
    result = _numpy_separable_conv2d(
        data, depthwise_filter.detach().contiguous(), pointwise_filter.detach().contiguous(), *geometry, target,
        depthwise_bias=None if depthwise_bias is None else depthwise_bias.detach(),
        depthwise_activation=depthwise_activation,
        pointwise_bias=None if pointwise_bias is None else pointwise_bias.detach(),
        pointwise_activation=pointwise_activation)
    return _from_dwc(result, channels_last)


separable_conv2d = torch.library.custom_op("dwc::separable_conv2d", mutates_args=(),
                                           device_types="cpu")(_separable_conv2d)


_register_inference_only(separable_conv2d, 11)


@separable_conv2d.register_fake
def _(input, depthwise_filter, pointwise_filter, depthwise_bias, pointwise_bias, stride, padding, dilation,
      depthwise_activation="none", pointwise_activation="none", target="host"):
    kernel_rows, kernel_cols = depthwise_filter.shape[:2]
    return _fake_output(input, pointwise_filter.shape[3], (kernel_rows, kernel_cols), stride, padding, dilation)


def _eager(input: torch.Tensor) -> bool:
    """Whether a dwc module's forward runs eagerly on a plain tensor, so that it may call its op's
    implementation itself: PyTorch's dispatch of a Python custom op costs ~15 us a call, longer
    than a small layer's kernel (7x7x960: 11 us). Traced (``torch.compile``, ``torch.export``:
    fake or proxy tensors; ``torch.jit.trace``) the module calls the registered op, which the
    trace records."""
    return type(input) is torch.Tensor and not torch.compiler.is_compiling() and not torch.jit.is_tracing()


class _KernelWeights(nn.Module):
    """A module whose parameters are a dwc kernel's arrays: they stay C-contiguous in the layout
    the kernel declares when the model is converted (``model.to(memory_format=torch.channels_last)``
    relays every 4-D parameter; a relaid weight would be copied back on every call).

    Eagerly (:func:`_eager`) the module keeps the kernel of its last input signature and calls
    it with its parameters as they are; the op's implementation parses its arguments, detaches
    the weights and looks the kernel up on every call (7x7x960: 20.4 us a module call against
    23.4 us for the op's implementation alone, paired, 21 rounds).

    Subclasses set ``in_channels``: the input channels PyTorch's conv took.
    """

    in_channels: int
    # The kept kernel: (the signature it was made for, its Kernel.call_exact, channels_last), replaced
    # as a whole, so that threads calling the module at once never pair one input with another
    # input's kernel. A cache: dropped when the module is pickled or converted.
    _eager_kernel: tuple | None = None

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        for parameter in self.parameters(recurse=False):
            if not parameter.is_contiguous():
                parameter.data = parameter.data.contiguous()
        self._eager_kernel = None  # the weights may have a new dtype
        return self

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_eager_kernel", None)  # a compiled function: not picklable, remade on the next call
        return state

    def _check_channels(self, input: torch.Tensor) -> None:
        """PyTorch's rule: the input has the replaced conv's channels (dwc's depthwise op, like
        ``F.conv2d(groups=C)``, would read another C dividing the weight's ``C*M`` as a multiplier)."""
        if input.dim() == 4 and input.shape[1] != self.in_channels:
            raise InvalidArgumentError(f"input: expected {self.in_channels} channels (dim 1 of [N, C, H, W]), "
                                       f"got {input.shape[1]}")

    def _eager_run(self, input: torch.Tensor, arrays: tuple, settings: tuple, make_kernel) -> torch.Tensor:
        """The kernel for `input` and the module's `settings` (any value whose change needs another
        kernel) run on `input` and the parameter `arrays`; `make_kernel(input)` gives the kernel for
        a new signature. Wrong arrays (a non-contiguous input, a dtype the kernel does not take)
        are refused by the compiled function and then copied or named by the kernel's checked call."""
        signature = (input.shape, input.stride(), input.dtype, input.is_cpu, settings)  # strides: the memory format
        kept = self._eager_kernel
        if kept is None or kept[0] != signature:
            if not input.is_cpu:
                raise InvalidArgumentError(f"input: dwc's modules compute on CPU tensors, got one on {input.device}")
            self._check_channels(input)
            kept = (copy.deepcopy(signature), make_kernel(input).call_exact, _is_channels_last(input))
            self._eager_kernel = kept
        _warn_if_gradients_wanted(input)
        _, call, channels_last = kept
        if channels_last:  # NHWC memory, seen as such (NumPy's view is cheaper than permute)
            data = (input.detach() if input.requires_grad else input).numpy().transpose(0, 2, 3, 1)
            return torch.from_numpy(call(data, *arrays).transpose(0, 3, 1, 2))
        return torch.from_numpy(call(input, *arrays))


class DepthwiseConv2d(_KernelWeights):
    """A depthwise convolution computed by dwc: the weight (``[C*M, 1, KH, KW]``), bias and
    activation of a replaced ``nn.Conv2d`` (with any folded BatchNorm and ReLU/ReLU6).

    Attributes:
        in_channels: C, the input channels the ``nn.Conv2d`` took (its ``groups``); None when
            constructing means the weight's ``C*M`` (a multiplier of 1).
        stride, padding, dilation: as the ``nn.Conv2d`` had them.
        activation: ``"none"``, ``"relu"`` or ``"relu6"``, applied inside the kernel.
        target: the dwc target the kernels are compiled for.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int],
                 padding: tuple[int, int], dilation: tuple[int, int], activation: str = "none",
                 target: str = "host", in_channels: int | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.stride, self.padding, self.dilation = list(stride), list(padding), list(dilation)
        self.activation, self.target = activation, target
        self.in_channels = weight.shape[0] if in_channels is None else in_channels

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """The convolution with its epilogue: the kept kernel when eager, else (traced)
        ``torch.ops.dwc.depthwise_conv2d`` (see :func:`_eager`)."""
        if not _eager(input):
            self._check_channels(input)
            return torch.ops.dwc.depthwise_conv2d(input, self.weight, self.bias, self.stride, self.padding,
                                                  self.dilation, self.activation, self.target)
        parameters = self._parameters
        weight, bias = parameters["weight"], parameters["bias"]
        return self._eager_run(input, (weight,) if bias is None else (weight, bias),
                               (self.stride, self.padding, self.dilation, self.activation, self.target, bias is None),
                               self._kernel_for)

    def _kernel_for(self, input: torch.Tensor):
        channels_last, data, geometry = _as_dwc_call(input, self.stride, self.padding, self.dilation)
        return _depthwise_kernel(data, self.weight.detach(), *geometry, self.target,
                                 None if self.bias is None else self.bias.detach(), self.activation, "OIHW")

    def extra_repr(self) -> str:
        return (f"{self.in_channels} -> {self.weight.shape[0]}, kernel={tuple(self.weight.shape[2:])}, "
                f"stride={tuple(self.stride)}, "
                f"padding={tuple(self.padding)}, dilation={tuple(self.dilation)}, bias={self.bias is not None}, "
                f"activation={self.activation}, target={self.target}")


class SeparableConv2d(_KernelWeights):
    """A depthwise convolution and the pointwise (1x1) convolution after it, computed by one
    fused dwc kernel (``torch.ops.dwc.separable_conv2d``): the weights of the replaced pair of
    ``nn.Conv2d`` (with any folded BatchNorms), held in dwc's layouts.

    Args:
        depthwise_weight: ``[C*M, 1, KH, KW]`` (``nn.Conv2d(groups=C)``'s), kept as ``[KH, KW, C, M]``.
        depthwise_bias: None or ``[C*M]``.
        pointwise_weight: ``[O, C*M, 1, 1]`` (a 1x1 ``nn.Conv2d``'s), kept as ``[1, 1, C*M, O]``.
        pointwise_bias: None or ``[O]``.
        in_channels: C.
        stride, padding, dilation: the depthwise convolution's.
        depthwise_activation, pointwise_activation: ``"none"``, ``"relu"`` or ``"relu6"``.
        target: the dwc target the kernels are compiled for.
    """

    def __init__(self, depthwise_weight: torch.Tensor, depthwise_bias: torch.Tensor | None,
                 pointwise_weight: torch.Tensor, pointwise_bias: torch.Tensor | None, in_channels: int,
                 stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int],
                 depthwise_activation: str = "none", pointwise_activation: str = "none", target: str = "host") -> None:
        super().__init__()
        channels, _, kernel_rows, kernel_cols = depthwise_weight.shape
        out_channels = pointwise_weight.shape[0]
        hwcm = depthwise_weight.detach()[:, 0].reshape(in_channels, channels // in_channels, kernel_rows, kernel_cols)
        self.depthwise_filter = nn.Parameter(hwcm.permute(2, 3, 0, 1).contiguous(), requires_grad=False)
        hwio = pointwise_weight.detach()[:, :, 0, 0].t().reshape(1, 1, channels, out_channels)
        self.pointwise_filter = nn.Parameter(hwio.contiguous(), requires_grad=False)
        self.depthwise_bias, self.pointwise_bias = (
            None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
            for bias in (depthwise_bias, pointwise_bias))
        self.stride, self.padding, self.dilation = list(stride), list(padding), list(dilation)
        self.depthwise_activation, self.pointwise_activation, self.target = (
            depthwise_activation, pointwise_activation, target)
        self.in_channels = in_channels

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Both convolutions with their epilogues: the kept kernel when eager, else (traced)
        ``torch.ops.dwc.separable_conv2d`` (see :func:`_eager`)."""
        if not _eager(input):
            self._check_channels(input)
            return torch.ops.dwc.separable_conv2d(
                input, self.depthwise_filter, self.pointwise_filter, self.depthwise_bias, self.pointwise_bias,
                self.stride, self.padding, self.dilation, self.depthwise_activation, self.pointwise_activation,
                self.target)
        parameters = self._parameters
        biases = tuple(bias for bias in (parameters["depthwise_bias"], parameters["pointwise_bias"]) if bias is not None)
        return self._eager_run(
            input, (parameters["depthwise_filter"], parameters["pointwise_filter"], *biases),
            (self.stride, self.padding, self.dilation, self.depthwise_activation, self.pointwise_activation,
             self.target, parameters["depthwise_bias"] is None, parameters["pointwise_bias"] is None),
            self._kernel_for)

    def _kernel_for(self, input: torch.Tensor):
        channels_last, data, geometry = _as_dwc_call(input, self.stride, self.padding, self.dilation)
        return _separable_kernel(
            data, self.depthwise_filter.detach(), self.pointwise_filter.detach(), *geometry, self.target,
            depthwise_bias=None if self.depthwise_bias is None else self.depthwise_bias.detach(),
            depthwise_activation=self.depthwise_activation,
            pointwise_bias=None if self.pointwise_bias is None else self.pointwise_bias.detach(),
            pointwise_activation=self.pointwise_activation)

    def extra_repr(self) -> str:
        kernel_rows, kernel_cols, channels, multiplier = self.depthwise_filter.shape
        return (f"{channels} -> {channels * multiplier} -> {self.pointwise_filter.shape[3]}, "
                f"kernel={(kernel_rows, kernel_cols)}, stride={tuple(self.stride)}, padding={tuple(self.padding)}, "
                f"dilation={tuple(self.dilation)}, activations=({self.depthwise_activation}, "
                f"{self.pointwise_activation}), target={self.target}")


def is_depthwise(module: nn.Module) -> bool:
    """Whether `module` is an ``nn.Conv2d`` dwc computes: ``groups == in_channels``, zero padding
    given as numbers (not ``"same"``), float weights."""
    return (type(module) is nn.Conv2d and module.groups == module.in_channels
            and module.padding_mode == "zeros" and not isinstance(module.padding, str)
            and module.weight.dtype in FLOAT_DTYPES)


def is_pointwise(module: nn.Module, in_channels: int) -> bool:
    """Whether `module` is a 1x1 ``nn.Conv2d`` over `in_channels` channels (stride 1, no padding,
    no groups) with the weights of dwc's float dtypes: the second step of a separable convolution."""
    return (type(module) is nn.Conv2d and module.in_channels == in_channels and module.groups == 1
            and tuple(module.kernel_size) == (1, 1) and tuple(module.stride) == (1, 1)
            and not isinstance(module.padding, str) and tuple(module.padding) == (0, 0)
            and tuple(module.dilation) == (1, 1) and module.weight.dtype in FLOAT_DTYPES)


def _folded(conv: nn.Conv2d, norm: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) of `conv` with the eval-mode BatchNorm `norm` (if any) folded in."""
    weight = conv.weight.detach()
    bias = None if conv.bias is None else conv.bias.detach()
    if norm is None:
        return weight, bias
    scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps) if norm.affine else \
        1 / torch.sqrt(norm.running_var + norm.eps)
    shift = norm.bias.detach() if norm.affine else torch.zeros_like(scale)
    centered = (bias if bias is not None else torch.zeros_like(scale)) - norm.running_mean
    return (weight * scale.reshape(-1, 1, 1, 1)).to(weight.dtype), (centered * scale + shift).to(weight.dtype)


def _can_fold(norm: nn.Module, conv: nn.Conv2d) -> bool:
    return (isinstance(norm, nn.BatchNorm2d) and not norm.training and norm.track_running_stats
            and norm.num_features == conv.out_channels and norm.running_mean is not None)


def replace_depthwise(model: nn.Module, target: str = "host", fuse_pointwise: bool = True) -> nn.Module:
    """Swap every depthwise ``nn.Conv2d`` of `model` (in place) for a dwc module.

    Inside an ``nn.Sequential``, an eval-mode ``BatchNorm2d`` right after the convolution is folded
    into its weight and bias, and a ``ReLU``/``ReLU6`` right after those into its epilogue (they
    become ``nn.Identity``): a :class:`DepthwiseConv2d`. With `fuse_pointwise`, a pointwise
    ``nn.Conv2d`` (:func:`is_pointwise`) right after those, with its own BatchNorm and
    ReLU/ReLU6, joins it: one :class:`SeparableConv2d` kernel for the pair (not where the
    depthwise convolution has both a stride and a dilation above 1, which TF's separable
    convolution refuses). Elsewhere the convolution alone is swapped. Everything else is left
    as it is.

    Returns:
        `model`; when `model` itself is a depthwise ``nn.Conv2d``, its replacement.
    """
    if is_depthwise(model):  # nothing to swap in place: the replacement is the result
        return _swap(model, None, "none", target)
    if isinstance(model, nn.Sequential):  # the model itself may be the sequence
        _replace_in_sequence(model, target, fuse_pointwise)
        return model
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Sequential):
            _replace_in_sequence(child, target, fuse_pointwise)
        elif is_depthwise(child):
            setattr(model, name, _swap(child, None, "none", target))
        else:
            replace_depthwise(child, target, fuse_pointwise)
    return model


def _epilogue_after(modules: list[nn.Module], conv: nn.Conv2d) -> tuple[nn.BatchNorm2d | None, str]:
    """The foldable BatchNorm and the activation (``"none"`` if neither) at the start of
    `modules`, the modules right after `conv`."""
    norm = modules[0] if modules and _can_fold(modules[0], conv) else None
    after_norm = modules[1:] if norm is not None else modules
    activation = ACTIVATION_MODULES.get(type(after_norm[0])) if after_norm else None
    return norm, activation or "none"


def _replace_in_sequence(sequence: nn.Sequential, target: str, fuse_pointwise: bool) -> None:
    names = list(sequence._modules)
    modules = list(sequence._modules.values())
    index = 0
    while index < len(names):
        module = modules[index]
        if is_depthwise(module):
            norm, activation = _epilogue_after(modules[index + 1:index + 3], module)
            conv, after = module, index + 1 + (norm is not None) + (activation != "none")
        else:
            # torchvision's MobileNet blocks: Sequential(Conv2dNormActivation(depthwise conv, BN,
            # ReLU6), 1x1 conv, BN): the depthwise conv's own sequence, then the 1x1 conv beside it.
            block = _depthwise_block(module) if fuse_pointwise else None
            if block is None or not _fusable(block[0], modules, index + 1):
                if isinstance(module, nn.Sequential):
                    _replace_in_sequence(module, target, fuse_pointwise)
                else:
                    replace_depthwise(module, target, fuse_pointwise)
                index += 1
                continue
            (conv, norm, activation), after = block, index + 1
        end = after
        if fuse_pointwise and _fusable(conv, modules, after):
            pointwise = modules[after]
            pointwise_norm, pointwise_activation = _epilogue_after(modules[after + 1:after + 3], pointwise)
            replacement = _fuse(conv, norm, activation, pointwise, pointwise_norm, pointwise_activation, target)
            end = after + 1 + (pointwise_norm is not None) + (pointwise_activation != "none")
        else:
            replacement = _swap(conv, norm, activation, target)
        sequence._modules[names[index]] = replacement
        for consumed in names[index + 1:end]:
            sequence._modules[consumed] = nn.Identity()
        index = end


def _depthwise_block(module: nn.Module) -> tuple[nn.Conv2d, nn.BatchNorm2d | None, str] | None:
    """(conv, BatchNorm, activation) when `module` is an ``nn.Sequential`` of a depthwise conv and
    only the BatchNorm and activation that fold into it (torchvision's ``Conv2dNormActivation``),
    else None."""
    if not isinstance(module, nn.Sequential) or len(module) == 0 or not is_depthwise(module[0]):
        return None
    layers = list(module)
    norm, activation = _epilogue_after(layers[1:3], layers[0])
    return (layers[0], norm, activation) if 1 + (norm is not None) + (activation != "none") == len(layers) else None


def _fusable(depthwise: nn.Conv2d, modules: list[nn.Module], position: int) -> bool:
    """Whether ``modules[position]`` exists and is a pointwise conv that joins `depthwise` in a
    separable kernel (TF's separable convolution refuses a stride and a dilation above 1 together)."""
    return (position < len(modules) and is_pointwise(modules[position], depthwise.out_channels)
            and not (max(depthwise.dilation) > 1 and max(depthwise.stride) > 1))


def _swap(conv: nn.Conv2d, norm: nn.BatchNorm2d | None, activation: str, target: str) -> DepthwiseConv2d:
    weight, bias = _folded(conv, norm)
    return DepthwiseConv2d(weight, bias, conv.stride, conv.padding, conv.dilation, activation, target,
                           conv.in_channels)


def _fuse(depthwise: nn.Conv2d, norm: nn.BatchNorm2d | None, activation: str, pointwise: nn.Conv2d,
          pointwise_norm: nn.BatchNorm2d | None, pointwise_activation: str, target: str) -> SeparableConv2d:
    depthwise_weight, depthwise_bias = _folded(depthwise, norm)
    pointwise_weight, pointwise_bias = _folded(pointwise, pointwise_norm)
    return SeparableConv2d(depthwise_weight, depthwise_bias, pointwise_weight, pointwise_bias, depthwise.in_channels,
                           depthwise.stride, depthwise.padding, depthwise.dilation, activation, pointwise_activation,
                           target)
