"""Backbone architectures: torchvision ResNets, optionally with every width multiplied.

Names: a registered base ('resnet18', 'resnet50', ...) optionally followed by 'x' and a width
multiplier, e.g. 'resnet50x3' (SimCLR's 3x wider ResNet-50) or 'resnet10x0.25' (a tiny CPU
model). Width 1 builds exactly torchvision's module, so state dicts match torchvision's.
"""
import re
from dataclasses import dataclass

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from fastinv.errors import UsageError
from fastinv.models.norm import NormLayer
from fastinv.registry import Registry


@dataclass(frozen=True)
class ArchSpec:
    """A ResNet layout: block type and blocks per stage."""

    block: type[BasicBlock] | type[Bottleneck]
    layers: tuple[int, int, int, int]


ARCHS: Registry[ArchSpec] = Registry("architecture")
ARCHS.register("resnet10")(ArchSpec(BasicBlock, (1, 1, 1, 1)))
ARCHS.register("resnet18")(ArchSpec(BasicBlock, (2, 2, 2, 2)))
ARCHS.register("resnet34")(ArchSpec(BasicBlock, (3, 4, 6, 3)))
ARCHS.register("resnet50")(ArchSpec(Bottleneck, (3, 4, 6, 3)))
ARCHS.register("resnet101")(ArchSpec(Bottleneck, (3, 4, 23, 3)))

_NAME = re.compile(r"^(?P<base>[a-z]+\d+)(?:x(?P<width>\d+(?:\.\d+)?))?$")


class ScaledResNet(ResNet):
    """torchvision's ResNet with all channel widths (stem included) multiplied by `width`."""

    def __init__(self, block, layers, width: float = 1.0, norm_layer: NormLayer | None = None):
        object.__setattr__(self, "width", width)
        super().__init__(block, list(layers), norm_layer=norm_layer)
        if width != 1.0:
            stem = self._scaled(64)
            self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
            self.bn1 = self._norm_layer(stem)
            self.fc = nn.Linear(self.inplanes, self.fc.out_features)

    def _scaled(self, channels: int) -> int:
        return int(round(channels * self.width))

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if planes == 64:  # layer1 starts from the (widened) stem
            self.inplanes = self._scaled(64)
        return super()._make_layer(block, self._scaled(planes), blocks, stride, dilate)


def parse_arch(name: str) -> tuple[ArchSpec, float]:
    """Split an architecture name into its registered layout and width multiplier."""
    match = _NAME.match(name)
    if match is None or match["base"] not in ARCHS:
        raise UsageError(f"unknown architecture {name!r}; valid: {', '.join(ARCHS.names())}, each optionally "
                         "with a width multiplier such as 'resnet50x3' or 'resnet18x0.5'")
    width = float(match["width"] or 1.0)
    if width <= 0 or abs(64 * width - round(64 * width)) > 1e-9:
        raise UsageError(f"architecture {name!r}: the width multiplier times 64 must be a whole number of channels")
    return ARCHS.get(match["base"]), width


def build_resnet(name: str, norm_layer: NormLayer | None = None) -> ScaledResNet:
    """Build the ResNet `name` (randomly initialised from the current torch RNG) with its fc
    replaced by Identity, so it outputs the globally average-pooled features."""
    spec, width = parse_arch(name)
    model = ScaledResNet(spec.block, spec.layers, width=width, norm_layer=norm_layer)
    model.fc = nn.Identity()
    return model
