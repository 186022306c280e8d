"""Small float classifiers on a token grid, for pixels or DCT channels (seed 000, ch. 2–3).

The seed compares inputs *on the same token grid*: RGB 224 with patch 4 and DCT 448 with
8×8 blocks both give a 56×56 grid. Here a ``C×G×G`` input (pixels folded into patches by
:class:`PixelPatches`, or DCT channels) enters :class:`GridResNet`: a 3×3 input convolution
to ``width`` channels, ``blocks`` residual basic blocks at the grid's resolution, global
average pooling and a linear head — or a cosine head (:class:`CosineClassifier`, baseline++'s
classifier) for few-shot pre-training. :meth:`GridResNet.features` is the embedding that
few-shot episodes use.
"""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BasicBlock", "CosineClassifier", "GridResNet", "PixelPatches"]


class PixelPatches(nn.Module):
    """Pixels in [0, 1] (N, C, H, W) -> standardised ``C·p² × H/p × W/p`` patches."""

    def __init__(self, patch, mean=0.286, std=0.353):
        super().__init__()
        self.patch, self.mean, self.std = int(patch), float(mean), float(std)

    @property
    def out_channels(self):
        return self.patch * self.patch

    def forward(self, x):
        return F.pixel_unshuffle((x - self.mean) / self.std, self.patch)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with BatchNorm and an identity shortcut."""

    def __init__(self, width):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


class CosineClassifier(nn.Module):
    """baseline++'s head: scaled cosine similarity to one weight vector per class."""

    def __init__(self, features, classes, scale=10.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, features) * 0.01)
        self.scale = float(scale)

    def forward(self, f):
        return self.scale * F.normalize(f, dim=1) @ F.normalize(self.weight, dim=1).t()


class GridResNet(nn.Module):
    """front end -> 3×3 conv -> ``blocks`` basic blocks -> global average -> head.

    Parameters
    ----------
    front : nn.Module
        Pixels [0, 1] -> ``front.out_channels × G × G`` (:class:`PixelPatches`,
        :class:`wrapkit.models.dct.DCTFrontEnd`).
    classes : int
    width, blocks : int
    cosine : bool
        A cosine head (baseline++) instead of a linear one.
    """

    def __init__(self, front, classes, *, width=32, blocks=2, cosine=False):
        super().__init__()
        self.front = front
        self.stem = nn.Sequential(nn.Conv2d(front.out_channels, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(*(BasicBlock(width) for _ in range(blocks)))
        self.head = CosineClassifier(width, classes) if cosine else nn.Linear(width, classes)

    @property
    def last_block(self):
        """The layer whose output Grad-CAM explains."""
        return self.blocks[-1]

    def body(self, z):
        """Front-end output -> logits (what the channel-wise Grad-CAM runs)."""
        return self.head(self.pool(self.blocks(self.stem(z))))

    @staticmethod
    def pool(a):
        return a.mean(dim=(2, 3))

    def features(self, x):
        """The embedding (after global average pooling) of pixels ``x``."""
        return self.pool(self.blocks(self.stem(self.front(x))))

    def forward(self, x):
        return self.body(self.front(x))
