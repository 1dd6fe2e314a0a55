"""Named workloads: one table shared by the tests, the benchmarks and the CLI.

MobileNetV2 at 224x224, batch 1: its depthwise layers, all 3x3 SAME NHWC float32; the cases
that exercise other paths (a 5x5 window, channel multiplier 2, dilation 2, batch 8); and its
separable pieces, each depthwise layer with the 1x1 projection after it (``-pw<O>``).
"""

from __future__ import annotations

from .errors import InvalidSpecError
from .ops.depthwise import DepthwiseSpec
from .ops.separable import SeparableSpec


def _layer(height: int, width: int, channels: int, stride: int, *, batch: int = 1, kernel: int = 3,
           multiplier: int = 1, dilation: int = 1) -> DepthwiseSpec:
    return DepthwiseSpec.create((batch, height, width, channels), (kernel, kernel, channels, multiplier),
                                strides=stride, padding="SAME", dilations=dilation)


MOBILENET_V2 = {
    "mbv2-112x112x32-s1": _layer(112, 112, 32, 1),
    "mbv2-112x112x96-s2": _layer(112, 112, 96, 2),
    "mbv2-56x56x144-s1": _layer(56, 56, 144, 1),
    "mbv2-56x56x144-s2": _layer(56, 56, 144, 2),
    "mbv2-28x28x192-s1": _layer(28, 28, 192, 1),
    "mbv2-28x28x192-s2": _layer(28, 28, 192, 2),
    "mbv2-14x14x384-s1": _layer(14, 14, 384, 1),
    "mbv2-14x14x576-s1": _layer(14, 14, 576, 1),
    "mbv2-14x14x576-s2": _layer(14, 14, 576, 2),
    "mbv2-7x7x960-s1": _layer(7, 7, 960, 1),
}

EXTRA = {
    "k5-28x28x240-s1": _layer(28, 28, 240, 1, kernel=5),
    "mult2-28x28x96-s1": _layer(28, 28, 96, 1, multiplier=2),
    "dil2-28x28x192-s1": _layer(28, 28, 192, 1, dilation=2),
    "batch8-28x28x192-s1": _layer(28, 28, 192, 1, batch=8),
}

# The output channels of the 1x1 projection after each MobileNetV2 depthwise layer.
_PROJECTIONS = {"mbv2-112x112x32-s1": 16, "mbv2-112x112x96-s2": 24, "mbv2-56x56x144-s1": 24,
                "mbv2-56x56x144-s2": 32, "mbv2-28x28x192-s1": 32, "mbv2-28x28x192-s2": 64,
                "mbv2-14x14x384-s1": 64, "mbv2-14x14x576-s1": 96, "mbv2-14x14x576-s2": 160,
                "mbv2-7x7x960-s1": 160}

MOBILENET_V2_BLOCKS = {f"{name}-pw{out_channels}": SeparableSpec(MOBILENET_V2[name], out_channels)
                       for name, out_channels in _PROJECTIONS.items()}

WORKLOADS: dict[str, DepthwiseSpec | SeparableSpec] = {**MOBILENET_V2, **EXTRA, **MOBILENET_V2_BLOCKS}

MODELS = {"mobilenet_v2": list(MOBILENET_V2), "mobilenet_v2_blocks": list(MOBILENET_V2_BLOCKS)}


def workload(name: str) -> DepthwiseSpec | SeparableSpec:
    """The named workload's spec.

    Raises:
        InvalidSpecError: naming the known workloads.
    """
    try:
        return WORKLOADS[name]
    except KeyError:
        raise InvalidSpecError(f"workload: unknown name {name!r}; expected one of {', '.join(WORKLOADS)}") from None


def model_workloads(model: str) -> list[str]:
    """The workload names of a named model's layers (``mobilenet_v2``: its depthwise layers;
    ``mobilenet_v2_blocks``: its separable pieces)."""
    try:
        return list(MODELS[model])
    except KeyError:
        raise InvalidSpecError(f"model: unknown model {model!r}; expected one of {', '.join(MODELS)}") from None
