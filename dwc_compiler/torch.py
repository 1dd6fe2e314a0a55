"""dwc inside PyTorch models: a registered op and a module swap (``pip install dwc[torch]``).

``torch.ops.dwc.depthwise_conv2d(input, weight, bias, stride, padding, dilation, activation)``
takes PyTorch's conventions: an NCHW tensor (contiguous or channels_last), the ``[C*M, 1, KH,
KW]`` weight of ``nn.Conv2d(groups=C)``, symmetric zero padding. CPU tensors are shared with the
kernel through their memory, not copied: a channels_last input is handed to dwc's NHWC kernel and
the output comes back channels_last, a contiguous one to the NCHW kernel. It has a fake (meta)
implementation, so ``torch.export`` and ``torch.compile`` trace through it. It computes in
inference mode (no gradient).

:func:`replace_depthwise` swaps every depthwise ``nn.Conv2d`` of a model for a module calling that
op, folding an eval-mode ``BatchNorm2d`` and a ``ReLU``/``ReLU6`` that follow it in an
``nn.Sequential`` into the kernel's bias and epilogue. Kernels compile once per shape and target
and are cached for the process.

PyTorch's and TVM's thread pools share the cores: each keeps its workers spinning for a while
after its own work, and on 2 cores MobileNetV2 with dwc's layers ran 0.41x PyTorch's speed at 2
threads while each pool's spinning workers held a core the other needed. Importing this module
therefore sets ``TVM_THREAD_POOL_SPIN_COUNT=0`` (unless it is set): TVM's workers sleep as soon
as a dwc kernel ends (the same run: 1.07x PyTorch's speed). It must happen before TVM's thread
pool starts, so import ``dwc_compiler.torch`` before running any dwc kernel in the process.
"""

from __future__ import annotations

import os
from typing import Optional

import torch
from torch import nn

os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", "0")  # before TVM's pool starts: see the module doc

from .api import depthwise_conv2d as _numpy_depthwise_conv2d  # noqa: E402
from .errors import InvalidArgumentError  # noqa: E402

ACTIVATION_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6"}


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


@torch.library.custom_op("dwc::depthwise_conv2d", mutates_args=(), device_types="cpu")
def depthwise_conv2d(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: list[int],
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
    stride_pair, padding_pair, dilation_pair = (_pair(stride, "stride"), _pair(padding, "padding"),
                                                _pair(dilation, "dilation"))
    pads = [[padding_pair[0], padding_pair[0]], [padding_pair[1], padding_pair[1]]]
    channels_last = _is_channels_last(input)
    # A channels_last tensor's memory, seen as a contiguous NHWC tensor, goes to the NHWC kernel.
    data = input.permute(0, 2, 3, 1) if channels_last else input.contiguous()
    result = _numpy_depthwise_conv2d(data.detach(), weight.detach().contiguous(), stride_pair, pads,
                                     "NHWC" if channels_last else "NCHW", dilation_pair, target,
                                     None if bias is None else bias.detach(), activation, "OIHW")
    output = torch.from_numpy(result)
    return output.permute(0, 3, 1, 2) if channels_last else output


@depthwise_conv2d.register_fake
def _(input, weight, bias, stride, padding, dilation, activation="none", target="host"):
    (stride_rows, stride_cols), (pad_rows, pad_cols), (dilation_rows, dilation_cols) = (
        _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation"))
    batch, _, height, width = input.shape
    out_channels, _, kernel_rows, kernel_cols = weight.shape
    shape = (batch, out_channels, _output_size(height, kernel_rows, stride_rows, pad_rows, dilation_rows),
             _output_size(width, kernel_cols, stride_cols, pad_cols, dilation_cols))
    return torch.empty(shape, dtype=input.dtype, device=input.device,
                       memory_format=torch.channels_last if _is_channels_last(input) else torch.contiguous_format)


class DepthwiseConv2d(nn.Module):
    """A depthwise convolution computed by dwc: the weight (``[C*M, 1, KH, KW]``), bias and
    activation of a replaced ``nn.Conv2d`` (with any folded BatchNorm and ReLU/ReLU6).

    Attributes:
        stride, padding, dilation: as the ``nn.Conv2d`` had them.
        activation: ``"none"``, ``"relu"`` or ``"relu6"``, applied inside the kernel.
        target: the dwc target the kernels are compiled for.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int],
                 padding: tuple[int, int], dilation: tuple[int, int], activation: str = "none",
                 target: str = "host") -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.stride, self.padding, self.dilation = list(stride), list(padding), list(dilation)
        self.activation, self.target = activation, target

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """The convolution with its epilogue, by ``torch.ops.dwc.depthwise_conv2d``."""
        return torch.ops.dwc.depthwise_conv2d(input, self.weight, self.bias, self.stride, self.padding,
                                              self.dilation, self.activation, self.target)

    def extra_repr(self) -> str:
        return (f"{self.weight.shape[0]}, kernel={tuple(self.weight.shape[2:])}, stride={tuple(self.stride)}, "
                f"padding={tuple(self.padding)}, dilation={tuple(self.dilation)}, bias={self.bias is not None}, "
                f"activation={self.activation}, target={self.target}")


def is_depthwise(module: nn.Module) -> bool:
    """Whether `module` is an ``nn.Conv2d`` dwc computes: ``groups == in_channels``, zero padding
    given as numbers (not ``"same"``), float weights."""
    return (type(module) is nn.Conv2d and module.groups == module.in_channels
            and module.padding_mode == "zeros" and not isinstance(module.padding, str)
            and module.weight.dtype in (torch.float32, torch.float16, torch.float64))


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


def replace_depthwise(model: nn.Module, target: str = "host") -> nn.Module:
    """Swap every depthwise ``nn.Conv2d`` of `model` (in place) for :class:`DepthwiseConv2d`.

    Inside an ``nn.Sequential``, an eval-mode ``BatchNorm2d`` right after the convolution is folded
    into its weight and bias, and a ``ReLU``/``ReLU6`` right after those into its epilogue (they
    become ``nn.Identity``). Elsewhere the convolution alone is swapped. Everything else is left
    as it is.

    Returns:
        `model`.
    """
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Sequential):
            _replace_in_sequence(child, target)
        elif is_depthwise(child):
            setattr(model, name, _swap(child, None, "none", target))
        else:
            replace_depthwise(child, target)
    return model


def _replace_in_sequence(sequence: nn.Sequential, target: str) -> None:
    names = list(sequence._modules)
    index = 0
    while index < len(names):
        module = sequence._modules[names[index]]
        if not is_depthwise(module):
            if isinstance(module, nn.Sequential):
                _replace_in_sequence(module, target)
            else:
                replace_depthwise(module, target)
            index += 1
            continue
        following = [sequence._modules[name] for name in names[index + 1:index + 3]]
        norm = following[0] if following and _can_fold(following[0], module) else None
        after_norm = following[1:] if norm is not None else following
        activation = ACTIVATION_MODULES.get(type(after_norm[0])) if after_norm else None
        sequence._modules[names[index]] = _swap(module, norm, activation or "none", target)
        consumed = (norm is not None) + (activation is not None)
        for offset in range(1, consumed + 1):
            sequence._modules[names[index + offset]] = nn.Identity()
        index += 1 + consumed


def _swap(conv: nn.Conv2d, norm: nn.BatchNorm2d | None, activation: str, target: str) -> DepthwiseConv2d:
    weight, bias = _folded(conv, norm)
    return DepthwiseConv2d(weight, bias, conv.stride, conv.padding, conv.dilation, activation, target)
