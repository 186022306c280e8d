"""Small vision transformers for 28×28 Fashion-MNIST: a ViT and a MetaFormer.

* :class:`ViT` — patch embedding (a ``p×p`` stride-``p`` convolution), a learnable absolute
  position embedding, pre-LN blocks ``x + attn(LN(x))``, ``x + mlp(LN(x))`` (head dim 16,
  MLP ratio 2), a final LN, the mean over tokens and a linear classifier. Patch 4 gives the
  7×7 = 49-token grid (seed 000 trains on 8×8 = 64 tokens of CIFAR-100 with patch 4).
* :class:`MetaFormer` — seed 002's hybrid (§4.3.1): a convolutional stem to a 14×14 grid
  (the seed's stage-3 resolution, 196 tokens), first blocks with a depthwise 3×3 token
  mixer, later blocks with (local) self-attention, each followed by the MLP channel mixer.

Both take an :class:`~wrapkit.models.attention.mixers.AttentionConfig` for every attention
block; with ``local_length`` set, odd blocks swap the partition's dimensions.
"""

import torch
from torch import nn

from .mixers import AttentionConfig, DepthwiseMixer, Mlp, MultiHeadAttention

__all__ = ["MetaBlock", "MetaFormer", "ViT", "attention_modules"]


class MetaBlock(nn.Module):
    """``x + mixer(norm1(x))``, then ``x + mlp(norm2(x))`` (pre-norm)."""

    def __init__(self, dim, mixer, mlp_ratio=2):
        super().__init__()
        self.norm1, self.mixer = nn.LayerNorm(dim), mixer
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, mlp_ratio)

    def forward(self, x):
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _attention_block(dim, grid, config, index, mlp_ratio):
    return MetaBlock(dim, MultiHeadAttention(dim, grid, config, swap=index % 2 == 1),
                     mlp_ratio)


class ViT(nn.Module):
    """Patch embedding + ``depth`` attention blocks + mean-token classifier."""

    def __init__(self, *, image_size=28, patch=4, dim=32, depth=4, mlp_ratio=2,
                 num_classes=10, in_channels=1, attention=AttentionConfig()):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"patch {patch} must divide image_size {image_size}")
        side = image_size // patch
        self.grid = (side, side)
        self.embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.pos = nn.Parameter(torch.zeros(1, side * side, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(_attention_block(dim, self.grid, attention, i, mlp_ratio)
                                    for i in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(dim=1))


class MetaFormer(nn.Module):
    """Stem to a 14×14 grid, ``conv_blocks`` depthwise-mixer blocks, ``attn_blocks``
    attention blocks (global or local), LN, mean over tokens, linear classifier."""

    def __init__(self, *, image_size=28, dim=32, conv_blocks=2, attn_blocks=2, mlp_ratio=2,
                 num_classes=10, in_channels=1, attention=AttentionConfig()):
        super().__init__()
        side = image_size // 2
        self.grid = (side, side)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, dim, 3, stride=2, padding=1),
                                  nn.BatchNorm2d(dim), nn.GELU())
        convs = [MetaBlock(dim, DepthwiseMixer(dim, self.grid), mlp_ratio)
                 for _ in range(conv_blocks)]
        attns = [_attention_block(dim, self.grid, attention, i, mlp_ratio)
                 for i in range(attn_blocks)]
        self.blocks = nn.ModuleList(convs + attns)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(dim=1))


def attention_modules(model):
    """Every :class:`MultiHeadAttention` of ``model``, in order."""
    return [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
