"""The networks: a VGG-7-style CNN and a ResNet-20-style CNN, WrapNet blocks inside.

A WrapNet block (Fig. 2.1b) is

    QuantConv2d (integer conv -> cyclic activation -> × s_w·s_x) -> BatchNorm -> ReLU

and the activation quantizer that closes the block in the figure is the *next* quantized
layer's input quantizer (``QuantConv2d.act_fq``), as in Brevitas's ``input_quant``: each layer
then owns everything its integer MAC needs (input step and bits, weights, accumulator). Max
pooling sits between ReLU and that quantizer; it commutes with the monotone quantizer, so the
order does not change any value.

First and last layers stay full precision (seed App. 2.6.2.3, after Rastegari et al.).
"""

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from wrapkit.common.checks import ParameterValueError

from .layers import QuantConv2d, QuantLinear, quant_layers
from .qconfig import WeightQuant
from .residual import QuantAdd

__all__ = ["MODELS", "ResNet20", "ResNet20Config", "VGG7", "VGG7Config", "build_model"]


def _check_widths(name, widths, n):
    if (not isinstance(widths, tuple) or len(widths) != n
            or not all(isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= 4096
                       for w in widths)):
        raise ParameterValueError(name, f"must be a tuple of {n} integers in [1, 4096], "
                                        f"got {widths!r}")


def _check_input(in_channels, image_size, min_size):
    if not (isinstance(in_channels, int) and 1 <= in_channels <= 16):
        raise ValueError(f"in_channels must be in [1, 16], got {in_channels!r}")
    if not (isinstance(image_size, int) and min_size <= image_size <= 1024):
        raise ValueError(f"image_size must be in [{min_size}, 1024], got {image_size!r}")


@dataclass(frozen=True)
class VGG7Config:
    """VGG-7 as used for CIFAR-10 in the paper (after TWN): 2×conv, pool, 2×conv, pool, 2×conv,
    pool, FC, classifier."""

    in_channels: int = 1      # Fashion-MNIST is greyscale
    image_size: int = 28      # three 2×2 pools: 28 -> 14 -> 7 -> 3
    num_classes: int = 10
    # The paper's CIFAR net is 128-256-512 with a 1024-unit FC layer. An eighth of the widths
    # (a quarter of the FC) keeps a Fashion-MNIST epoch on 2 CPU cores near a minute, while the
    # deepest layers still sum 576 products: enough for 3-bit activations to overflow an 8-bit
    # accumulator.
    widths: tuple = (16, 32, 64)
    hidden: int = 256
    weight_quant: WeightQuant = field(default_factory=lambda: WeightQuant("binary"))

    def __post_init__(self):
        _check_input(self.in_channels, self.image_size, 8)
        _check_widths("widths", self.widths, 3)
        _check_widths("hidden", (self.hidden,), 1)
        if not isinstance(self.weight_quant, WeightQuant):
            raise TypeError("weight_quant must be a WeightQuant")

    def to_dict(self):
        return {**asdict(self), "widths": list(self.widths)}


class ConvBlock(nn.Module):
    """QuantConv2d (3×3) -> BatchNorm -> ReLU [-> 2×2 max pool]."""

    def __init__(self, cin, cout, weight_quant, pool=False):
        super().__init__()
        self.conv = QuantConv2d(cin, cout, 3, padding=1, weight_quant=weight_quant)
        self.bn = nn.BatchNorm2d(cout)
        self.pool = pool

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        return F.max_pool2d(x, 2) if self.pool else x


class VGG7(nn.Module):
    def __init__(self, config: VGG7Config):
        super().__init__()
        self.config = config
        c1, c2, c3 = config.widths
        wq = config.weight_quant
        # Full-precision first layer: it sees raw pixels.
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1),
            nn.ReLU())
        self.block2 = ConvBlock(c1, c1, wq, pool=True)
        self.block3 = ConvBlock(c1, c2, wq)
        self.block4 = ConvBlock(c2, c2, wq, pool=True)
        self.block5 = ConvBlock(c2, c3, wq)
        self.block6 = ConvBlock(c3, c3, wq, pool=True)
        side = config.image_size // 8
        self.fc7 = QuantLinear(c3 * side * side, config.hidden, weight_quant=wq)
        self.bn7 = nn.BatchNorm1d(config.hidden)
        # Full-precision classifier (with bias: no BatchNorm follows it).
        self.classifier = nn.Linear(config.hidden, config.num_classes)

    def forward(self, x):
        x = self.stem(x)
        for block in (self.block2, self.block3, self.block4, self.block5, self.block6):
            x = block(x)
        x = F.relu(self.bn7(self.fc7(x.flatten(1))))
        return self.classifier(x)

    def quant_layers(self):
        return quant_layers(self)


@dataclass(frozen=True)
class ResNet20Config:
    """ResNet-20 for CIFAR (He et al. 2016): 3 stages × 3 basic blocks, option-A shortcuts."""

    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    widths: tuple = (16, 32, 64)   # the original CIFAR widths; small enough for CPUs
    blocks_per_stage: int = 3      # 6n+2 layers with n = 3 -> 20
    weight_quant: WeightQuant = field(default_factory=lambda: WeightQuant("binary"))

    def __post_init__(self):
        _check_input(self.in_channels, self.image_size, 4)
        _check_widths("widths", self.widths, 3)
        if not (isinstance(self.blocks_per_stage, int) and 1 <= self.blocks_per_stage <= 18):
            raise ValueError(f"blocks_per_stage must be in [1, 18], got {self.blocks_per_stage!r}")
        if not isinstance(self.weight_quant, WeightQuant):
            raise TypeError("weight_quant must be a WeightQuant")

    def to_dict(self):
        return {**asdict(self), "widths": list(self.widths)}


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus shortcut, then ReLU. Both convolutions are WrapNet layers;
    the shortcut never enters an accumulator, and the add with its ReLU is a
    :class:`~wrapkit.models.residual.QuantAdd`: the float ``relu(a + b)`` until activations
    are quantized, then an exact integer add of the two branches' codes."""

    def __init__(self, cin, cout, stride, weight_quant):
        super().__init__()
        self.conv1 = QuantConv2d(cin, cout, 3, stride, 1, weight_quant=weight_quant)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = QuantConv2d(cout, cout, 3, 1, 1, weight_quant=weight_quant)
        self.bn2 = nn.BatchNorm2d(cout)
        self.add = QuantAdd()
        self.stride, self.pad = stride, cout - cin

    def shortcut(self, x):
        # Option A: subsample and zero-pad channels; parameter-free, so nothing to quantize.
        # A 1×1 max pool with the stride is the subsampling x[:, :, ::s, ::s], written as a
        # pooling so that tracing maps it to a graph node.
        if self.stride != 1:
            x = F.max_pool2d(x, 1, self.stride)
        return F.pad(x, (0, 0, 0, 0, 0, self.pad)) if self.pad else x

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.add(out, self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, config: ResNet20Config):
        super().__init__()
        self.config = config
        w1, w3 = config.widths[0], config.widths[-1]
        wq = config.weight_quant
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, w1, 3, padding=1, bias=False), nn.BatchNorm2d(w1),
            nn.ReLU())
        blocks, cin = [], w1
        for stage, width in enumerate(config.widths):
            for i in range(config.blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(cin, width, stride, wq))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        for block, nxt in zip(blocks, blocks[1:] + [None]):
            block.add.bind(block.conv1, None if nxt is None else nxt.conv1)
        self.classifier = nn.Linear(w3, config.num_classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def quant_layers(self):
        return quant_layers(self)


MODELS = {"vgg7": (VGG7Config, VGG7), "resnet20": (ResNet20Config, ResNet20)}


def build_model(name, **config):
    """``build_model("vgg7", widths=(8, 8, 16), weight_quant=WeightQuant("ternary"))``."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {name!r}")
    cfg_cls, model_cls = MODELS[name]
    if isinstance(config.get("weight_quant"), dict):
        config["weight_quant"] = WeightQuant(**config["weight_quant"])
    if isinstance(config.get("widths"), list):
        config["widths"] = tuple(config["widths"])
    return model_cls(cfg_cls(**config))
