"""Attention models: small vision transformers, TWIST, local self-attention, quantization.

* :mod:`.twist` — SATA's TWIST (seed 000 §4.3): fused float function, its elementwise
  definition, the learnable module (float or integer on probability codes).
* :mod:`.local` — seed 002's mobile-friendly local self-attention partition (window length
  ``M``, dimension swap) and the relative-position index.
* :mod:`.mixers` — multi-head self-attention (global/local, TWIST, temperature, Lee et al.'s
  diagonal masking), signed-input token projections, the depthwise token mixer, the MLP.
* :mod:`.vit` — ViT and MetaFormer for Fashion-MNIST.
* :mod:`.quant` — quantizing them (linears, Q/K/V codes, integer softmax, integer TWIST),
  accumulator-overflow measurement, an exportable attention network.
"""

from .local import merge_partitions, partition_tokens, relative_position_index
from .mixers import AttentionConfig, DepthwiseMixer, Mlp, MultiHeadAttention, TokenLinear
from .quant import AttentionNet, overflow_report, quantize_attention
from .twist import QuantTwist, twist, twist_naive
from .vit import MetaBlock, MetaFormer, ViT, attention_modules

__all__ = ["AttentionConfig", "AttentionNet", "DepthwiseMixer", "MetaBlock", "MetaFormer",
           "Mlp", "MultiHeadAttention", "QuantTwist", "TokenLinear", "ViT",
           "attention_modules", "merge_partitions", "overflow_report", "partition_tokens",
           "quantize_attention", "relative_position_index", "twist", "twist_naive"]
