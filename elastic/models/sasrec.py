"""SASRec (Kang & McAuley, 2018) with full-softmax cross-entropy: the baseline ELASTIC is
measured against. Causal self-attention in two forms that must agree:

- ``materialized``: explicit (N × N) scores — what the paper's efficiency claims compare to;
- ``sdpa``: ``F.scaled_dot_product_attention`` — the fused kernel a modern engineer would use.

``attention="none"`` removes the attention sublayer (embedding, feed-forward and loss remain):
not a recommender worth training, but the floor no attention form can go below, which the
efficiency benchmark measures beside the others (`python -m elastic bench --impl none`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from elastic.models.common import PAD, SequentialRecommender


@dataclass
class SASRecConfig:
    num_items: int = 1000  # catalogue size |I| (ids 1..|I|, 0 = padding)
    max_len: int = 200  # N: the most recent N items of a history are used
    d_model: int = 64  # d: embedding and hidden width
    num_layers: int = 2  # transformer blocks
    num_heads: int = 2  # h: attention heads (d_model must divide by it)
    dropout: float = 0.2  # on embeddings, attention weights and feed-forward
    ffn_mult: int = 4  # feed-forward width = ffn_mult × d_model
    attention: str = "sdpa"  # "materialized" (N×N scores), "sdpa" (fused), "none" (the floor)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        if config.d_model % config.num_heads:
            raise ValueError("d_model must be divisible by num_heads")
        if config.attention not in ("materialized", "sdpa", "none"):
            raise ValueError(f"unknown attention form {config.attention!r}")
        self.h = config.num_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout
        self.attention = config.attention

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q, k, v = (t.view(b, n, self.h, d // self.h).transpose(1, 2) for t in (q, k, v))
        # (B, h, N, dh). Position t sees keys s <= t that are not padding.
        p = self.dropout if self.training else 0.0
        if self.attention == "sdpa" and not pad.any():
            # no padding: the fused kernel's own causal mask, no (N × N) mask in memory
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
            return self.proj(y.transpose(1, 2).reshape(b, n, d))
        causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        allowed = causal & ~pad[:, None, None, :]  # (B, 1, N, N)
        # a pad query sees no key; let it see itself so its (discarded) row stays finite
        allowed = allowed | torch.eye(n, dtype=torch.bool, device=x.device)
        if self.attention == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
        else:
            scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.h)  # (B, h, N, N)
            scores = scores.masked_fill(~allowed, float("-inf"))
            y = F.dropout(scores.softmax(-1), p, self.training) @ v  # (B, h, N, dh)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        d = config.d_model
        attend = config.attention != "none"
        self.norm1 = nn.LayerNorm(d) if attend else None
        self.attn = CausalSelfAttention(config) if attend else None
        self.norm2 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(
            nn.Linear(d, config.ffn_mult * d),
            nn.GELU(),
            nn.Linear(config.ffn_mult * d, d),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        if self.attn is not None:
            x = x + self.attn(self.norm1(x), pad)
        return x + self.ffn(self.norm2(x))


class SASRecModel(SequentialRecommender):
    def __init__(self, config: SASRecConfig) -> None:
        super().__init__(config.num_items, config.d_model, config.max_len, config.dropout)
        self.config = config
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))

    def encode(self, item_ids: torch.Tensor) -> torch.Tensor:
        pad = item_ids == PAD  # (B, N)
        x = self.embedding(item_ids)  # (B, N, d)
        for block in self.blocks:
            x = block(x, pad)
        return self.final_norm(x)

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Next-item logits (B, |I|+1) at the last position."""
        return self.scores(self.encode(item_ids)[:, -1])

    def training_loss(self, input_ids: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
        return self.loss_from_hidden(self.encode(input_ids), target_ids)
