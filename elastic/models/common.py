"""What ELASTIC and SASRec share: item embedding, tied output head, and the training loss.

Both models are `SequentialRecommender`s: they map a left-padded batch of item ids (B, N) to
hidden states (B, N, d); the output head is the transposed item embedding, so a score is
`h · e_item`. Keeping this in one place makes the comparison between the two fair: the only
thing that differs is the sequence mixer.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

PAD = 0  # item id 0 is padding everywhere


class ItemEmbedding(nn.Module):
    """Item embedding (id 0 = padding) + learned positions counted from the right.

    Position 0 is the most recent item. Counting from the right makes every output invariant to
    how much left padding a batch carries, and the last item always has the same position at
    training and at inference.
    """

    def __init__(self, num_items: int, d_model: int, max_len: int, dropout: float) -> None:
        super().__init__()
        self.items = nn.Embedding(num_items + 1, d_model, padding_idx=PAD)
        self.positions = nn.Embedding(max_len, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.max_len = max_len
        nn.init.normal_(self.items.weight, std=d_model**-0.5)
        with torch.no_grad():
            self.items.weight[PAD].zero_()
        nn.init.normal_(self.positions.weight, std=0.02)

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        n = item_ids.shape[1]
        if n > self.max_len:
            raise ValueError(f"sequence length {n} exceeds the model's max_len {self.max_len}")
        right_pos = torch.arange(n - 1, -1, -1, device=item_ids.device)  # (N,) distance from end
        x = self.items(item_ids) * self.items.embedding_dim**0.5 + self.positions(right_pos)
        x = self.dropout(self.norm(x))  # (B, N, d)
        return x * (item_ids != PAD).unsqueeze(-1)  # pad tokens carry nothing


def _chunk_ce_sum(
    hidden: torch.Tensor, item_weight: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    logits = hidden @ item_weight.T  # (rows, |I|+1)
    logits[:, PAD] = float("-inf")
    return F.cross_entropy(logits.float(), targets, reduction="sum")


def full_softmax_loss(
    hidden: torch.Tensor,
    item_weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_rows: int = 2048,
) -> torch.Tensor:
    """Mean cross-entropy over all items at the rows with a target, chunked.

    hidden (R, d), targets (R,) with 0 = no target. Logits exist one chunk of rows at a time and
    are recomputed in backward (checkpoint), so the peak is chunk_rows × |I| floats instead of
    R × |I| — what fused linear-cross-entropy kernels do, written in plain PyTorch.
    """
    keep = targets != PAD
    hidden, targets = hidden[keep], targets[keep]
    total = hidden.new_zeros((), dtype=torch.float32)
    grad = torch.is_grad_enabled() and (hidden.requires_grad or item_weight.requires_grad)
    # split, not hidden[start:start+rows]: a slice's backward fills a zero tensor of hidden's
    # full size, once per chunk, which made the loss O(R²/chunk_rows) in time
    for h, t in zip(hidden.split(chunk_rows), targets.split(chunk_rows), strict=True):
        if grad:
            total = total + checkpoint(_chunk_ce_sum, h, item_weight, t, use_reentrant=False)
        else:
            total = total + _chunk_ce_sum(h, item_weight, t)
    return total / keep.sum().clamp_min(1)


def sampled_softmax_loss(
    hidden: torch.Tensor,
    item_weight: torch.Tensor,
    targets: torch.Tensor,
    num_negatives: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Cross-entropy over the target and `num_negatives` uniformly sampled items (shared per
    batch), with the logQ correction for uniform sampling (a constant, so it cancels) and
    accidental hits masked. For catalogues too large for a full softmax."""
    keep = targets != PAD
    hidden, targets = hidden[keep], targets[keep]
    num_items = item_weight.shape[0] - 1
    negatives = torch.randint(
        1, num_items + 1, (num_negatives,), device=hidden.device, generator=generator
    )
    pos = (hidden * item_weight[targets]).sum(-1, keepdim=True)  # (R, 1)
    neg = hidden @ item_weight[negatives].T  # (R, M)
    neg = neg.masked_fill(negatives.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
    logits = torch.cat([pos, neg], dim=1).float()
    return F.cross_entropy(logits, torch.zeros_like(targets))


class SequentialRecommender(nn.Module):
    """Base class: embedding, tied head, loss. Subclasses implement `encode`."""

    config: object

    def __init__(self, num_items: int, d_model: int, max_len: int, dropout: float) -> None:
        super().__init__()
        self.embedding = ItemEmbedding(num_items, d_model, max_len, dropout)
        self.final_norm = nn.LayerNorm(d_model)
        self.loss_type = "full"  # "full" or "sampled"; the trainer may switch it
        self.num_negatives = 256

    @property
    def num_items(self) -> int:
        return self.embedding.items.num_embeddings - 1

    @property
    def item_weight(self) -> torch.Tensor:
        return self.embedding.items.weight  # (|I|+1, d): the tied output head

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (..., d) -> logits (..., |I|+1) with the padding column at -inf."""
        logits = hidden @ self.item_weight.T
        logits[..., PAD] = float("-inf")
        return logits

    def loss_from_hidden(self, hidden: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
        hidden = hidden.reshape(-1, hidden.shape[-1])  # (B·N, d)
        targets = target_ids.reshape(-1)
        if self.loss_type == "sampled":
            return sampled_softmax_loss(hidden, self.item_weight, targets, self.num_negatives)
        return full_softmax_loss(hidden, self.item_weight, targets)

    def parameter_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        """(parameters, learning-rate scale) pairs for the optimizer: one group by default."""
        return [(list(self.parameters()), 1.0)]

    def config_dict(self) -> dict:
        return asdict(self.config)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
