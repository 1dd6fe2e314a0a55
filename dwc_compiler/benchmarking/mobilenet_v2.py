"""MobileNetV2 (Sandler et al., 2018) written out in PyTorch for the end-to-end benchmark.

The architecture of ``torchvision.models.mobilenet_v2`` (width 1.0, 224x224, 1000 classes), built
from plain ``nn.Sequential``s of ``Conv2d``, ``BatchNorm2d`` and ``ReLU6`` so that
``dwc_compiler.torch.replace_depthwise`` can fold each depthwise convolution's BatchNorm and ReLU6
into its kernel. Weights and BatchNorm statistics are random (seeded): no download, and the
timings do not depend on the values.
"""

from __future__ import annotations

import torch
from torch import nn

# (expansion t, output channels c, repeats n, first stride s), as in the paper's Table 2.
INVERTED_RESIDUAL_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                              (6, 160, 3, 2), (6, 320, 1, 1))


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int, groups: int = 1,
             relu6: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups,
                                         bias=False), nn.BatchNorm2d(out_channels)]
    return layers + [nn.ReLU6(inplace=True)] if relu6 else layers


class InvertedResidual(nn.Module):
    """1x1 expansion (when t > 1) -> 3x3 depthwise -> 1x1 linear projection, with the input
    added back when the shapes allow (stride 1, same channels)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers = _conv_bn(in_channels, hidden, 1, 1) if expansion != 1 else []
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += _conv_bn(hidden, out_channels, 1, 1, relu6=False)
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block; its input added back when it has a residual connection."""
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 1.0 for 224x224 images: 17 inverted residual blocks, 17 depthwise layers."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(*_conv_bn(3, 32, 3, 2))]
        in_channels = 32
        for expansion, out_channels, repeats, stride in INVERTED_RESIDUAL_SETTINGS:
            for index in range(repeats):
                layers.append(InvertedResidual(in_channels, out_channels, stride if index == 0 else 1, expansion))
                in_channels = out_channels
        layers.append(nn.Sequential(*_conv_bn(in_channels, 1280, 1, 1)))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of 3-channel images."""
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def mobilenet_v2(seed: int = 0) -> MobileNetV2:
    """A MobileNetV2 in eval mode with seeded random weights and BatchNorm statistics."""
    generator = torch.Generator().manual_seed(seed)
    model = MobileNetV2()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
                module.weight.normal_(0, (2 / fan_in) ** 0.5, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.uniform_(-0.2, 0.2, generator=generator)
                module.running_mean.uniform_(-0.2, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
            elif isinstance(module, nn.Linear):
                module.weight.normal_(0, 0.01, generator=generator)
                module.bias.zero_()
    return model.eval()
