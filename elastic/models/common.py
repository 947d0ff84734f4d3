"""What ELASTIC and SASRec share: item embedding, tied output head, and the training loss.

Both models are `SequentialRecommender`s: they map a left-padded batch of item ids (B, N) to
hidden states (B, N, d); the output head is the transposed item embedding, so a score is
`h · e_item`. Keeping this in one place makes the comparison between the two fair: the only
thing that differs is the sequence mixer.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

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


LOGITS_PER_CHUNK = 2**25  # full softmax: at most this many logits (128 MiB float32) at once


def _item_logits(hidden_rows: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """(rows, d) @ (|I|, d)ᵀ -> (rows, |I|): the logits of the real items (no padding column)."""
    return hidden_rows @ items.T


class _LinearCrossEntropy(torch.autograd.Function):
    """Σ_r CE(h_r · Eᵀ, t_r) over the real items, one chunk of rows of logits at a time.

    forward: per chunk, logits = h·E[1:]ᵀ (one product), the target logits, and
    lse_r = log Σ_i exp(logit_ri), in place on the logits; keeps only h, E, t and lse (R,).
    The padding column is never formed: E[1:] is a view and targets are shifted by one.
    backward: per chunk, the logits again (one product), turned in place into
    G = exp(logits − lse) − onehot(t) = softmax − onehot, then ∂h = G·E[1:] and ∂E[1:] += Gᵀ·h
    (two products); ∂E[PAD] = 0. No log-softmax is kept, no (rows, |I|) zeros are filled, and
    the peak is one chunk of logits either way. Computed in float32, or float64 for float64
    inputs; gradients come back in the inputs' dtypes.
    """

    @staticmethod
    def forward(ctx, hidden, item_weight, targets, chunk_rows):
        # hidden (R, d), item_weight (|I|+1, d), targets (R,) in 1..|I|
        dtype = torch.promote_types(torch.promote_types(hidden.dtype, item_weight.dtype),
                                    torch.float32)
        items = item_weight[1:].to(dtype)  # (|I|, d), a view when already in dtype
        lse = hidden.new_empty(hidden.shape[0], dtype=dtype)  # (R,)
        total = hidden.new_zeros((), dtype=dtype)
        for start in range(0, hidden.shape[0], chunk_rows):
            rows = slice(start, start + chunk_rows)
            logits = _item_logits(hidden[rows].to(dtype), items)  # (rows, |I|)
            target_logits = logits.gather(1, targets[rows, None] - 1)  # (rows, 1)
            row_max = logits.amax(1, keepdim=True)  # (rows, 1)
            lse_rows = logits.sub_(row_max).exp_().sum(1, keepdim=True).log_().add_(row_max)
            lse[rows] = lse_rows.squeeze(1)
            total += (lse_rows - target_logits).sum()
            del logits  # else it lives on while the next chunk's is allocated: two chunks
        ctx.save_for_backward(hidden, item_weight, targets, lse)
        ctx.chunk_rows = chunk_rows
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_total):
        hidden, item_weight, targets, lse = ctx.saved_tensors
        want_hidden, want_weight = ctx.needs_input_grad[:2]
        # backward may run under the caller's autocast, which would turn the products to bf16
        with torch.autocast(hidden.device.type, enabled=False):
            items = item_weight[1:].to(lse.dtype)  # (|I|, d)
            grad_hidden = hidden.new_empty(hidden.shape, dtype=lse.dtype) if want_hidden else None
            grad_weight = (
                item_weight.new_zeros(item_weight.shape, dtype=lse.dtype) if want_weight else None
            )
            for start in range(0, hidden.shape[0], ctx.chunk_rows):
                rows = slice(start, start + ctx.chunk_rows)
                h = hidden[rows].to(lse.dtype)  # (rows, d)
                grad_logits = _item_logits(h, items)  # (rows, |I|)
                grad_logits.sub_(lse[rows, None]).exp_()  # softmax
                row_ids = torch.arange(h.shape[0], device=h.device)
                grad_logits[row_ids, targets[rows] - 1] -= 1
                if want_hidden:
                    torch.mm(grad_logits, items, out=grad_hidden[rows])  # (rows, d)
                if want_weight:
                    # addmm with out=, not addmm_: the same accumulation, but FlopCounterMode
                    # counts aten.addmm and not aten.addmm_ (complexity's formulas are held to it)
                    grad_items = grad_weight[1:]  # (|I|, d)
                    torch.addmm(grad_items, grad_logits.T, h, out=grad_items)
                del grad_logits  # one chunk alive at a time, as in forward
            # grad_total scales the (R, d) and (|I|+1, d) results, not every chunk of logits
            if want_hidden:
                grad_hidden = grad_hidden.mul_(grad_total).to(hidden.dtype)
            if want_weight:
                grad_weight = grad_weight.mul_(grad_total).to(item_weight.dtype)
        return grad_hidden, grad_weight, None, None


def full_softmax_loss(
    hidden: torch.Tensor,
    item_weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_rows: int = 2048,
) -> torch.Tensor:
    """Mean cross-entropy over all items at the rows with a target, chunked and fused.

    hidden (R, d), item_weight (|I|+1, d), targets (R,) with 0 = no target. The logits
    h · item_weightᵀ exist one chunk of rows at a time, in forward and again in backward,
    where they become the gradient softmax − onehot in place (`_LinearCrossEntropy`), so the
    peak is chunk_rows × |I| floats instead of R × |I| — the fused linear cross-entropy of Liger
    Kernel and of "Cut Your Losses" (Wijmans et al. 2024), written in plain PyTorch. A chunk
    holds at most LOGITS_PER_CHUNK logits, so a catalogue of a million items takes 32 rows at
    a time. Computed in float32 (float64 for float64 inputs), under autocast too; gradients
    come back in the inputs' dtypes. With no target at all the loss is 0, its gradients 0.
    """
    chunk_rows = max(1, min(chunk_rows, LOGITS_PER_CHUNK // item_weight.shape[0]))
    keep = targets != PAD
    with torch.autocast(hidden.device.type, enabled=False):
        total = _LinearCrossEntropy.apply(hidden[keep], item_weight, targets[keep], chunk_rows)
    return total / keep.sum().clamp_min(1)


NEGATIVE_SAMPLERS = ("uniform", "log-uniform", "popularity")


def negative_distribution(kind: str, target_counts: torch.Tensor) -> torch.Tensor:
    """q (|I|+1,) float64, q[PAD] = 0: the distribution sampled-softmax negatives are drawn from.

    target_counts (|I|+1,): how often each item is a training target.

    - "uniform": q_i = 1/|I|;
    - "popularity": q_i ∝ count_i + 1 (add-one: an item never seen as a target can still be
      drawn, so it is still pushed down);
    - "log-uniform": Zipf over the popularity rank r (0 = most popular),
      q = log((r + 2) / (r + 1)) / log(|I| + 1) — TensorFlow's log-uniform candidate sampler,
      which assumes ids sorted by frequency; ours are not, so the rank comes from the counts.
    """
    if kind not in NEGATIVE_SAMPLERS:
        raise ValueError(f"sampler must be one of {NEGATIVE_SAMPLERS}, got {kind!r}")
    counts = target_counts.double()[1:]  # (|I|,)
    num_items = counts.numel()
    if kind == "uniform":
        q = torch.full((num_items,), 1.0 / num_items, dtype=torch.float64)
    elif kind == "popularity":
        q = (counts + 1) / (counts + 1).sum()
    else:
        rank = torch.empty(num_items, dtype=torch.float64)
        rank[torch.argsort(-counts, stable=True)] = torch.arange(num_items, dtype=torch.float64)
        q = torch.log((rank + 2) / (rank + 1)) / math.log(num_items + 1)
    return torch.cat([q.new_zeros(1), q])


class NegativeSampler:
    """The candidates of one batch's sampled softmax and the log of how often each was expected.

    `num_negatives` items are drawn with replacement from `negative_distribution(kind, counts)`
    and shared by every row of the batch; `batch_negatives` more are the targets of random rows
    of the same batch (in-batch negatives, Yi et al. 2019), which follow the targets' own
    frequency p = counts / Σ counts. With M + M' draws an item j is expected

        E_j = M·q_j + M'·p_j

    times among the candidates, and `log E_j` is its logQ correction (`sampled_softmax_loss`).
    Drawing is a binary search in the cumulative distribution: O(M log |I|) per batch.
    """

    def __init__(
        self,
        kind: str,
        target_counts: torch.Tensor,
        num_negatives: int = 256,
        batch_negatives: int = 0,
    ) -> None:
        if num_negatives < 0 or batch_negatives < 0 or num_negatives + batch_negatives == 0:
            raise ValueError(
                "sampled softmax needs negatives: num_negatives and batch_negatives must be "
                f">= 0 and not both 0, got {num_negatives} and {batch_negatives}"
            )
        self.kind = kind
        self.num_negatives = num_negatives
        self.batch_negatives = batch_negatives
        self.q = negative_distribution(kind, target_counts)  # (|I|+1,) float64
        counts = target_counts.double()
        self.p = counts / counts.sum().clamp_min(1)  # (|I|+1,) frequency of each target
        self.cdf = torch.cumsum(self.q[1:], 0)  # (|I|,)

    def to(self, device: torch.device | str) -> NegativeSampler:
        """Move the distributions to the device the batches live on; returns self."""
        self.q, self.p, self.cdf = (t.to(device) for t in (self.q, self.p, self.cdf))
        return self

    def candidates(self, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """targets (R,), all real items -> (candidate ids (C,), log expected count (C,))."""
        device = self.cdf.device
        draws = torch.rand(self.num_negatives, dtype=torch.float64, device=device)
        drawn = torch.searchsorted(self.cdf, draws * self.cdf[-1], right=True)
        drawn = drawn.clamp_max(self.cdf.numel() - 1) + 1  # (M,) ids in 1..|I|
        rows = torch.randint(0, max(1, targets.numel()), (self.batch_negatives,), device=device)
        in_batch = targets.to(device)[rows] if targets.numel() else rows.new_zeros(0)
        ids = torch.cat([drawn, in_batch])  # (M + M',)
        expected = self.num_negatives * self.q[ids] + self.batch_negatives * self.p[ids]
        return ids, expected.log().float()


def sampled_softmax_loss(
    hidden: torch.Tensor,
    item_weight: torch.Tensor,
    targets: torch.Tensor,
    candidates: torch.Tensor,
    log_expected: torch.Tensor,
) -> torch.Tensor:
    """Mean sampled-softmax cross-entropy with the logQ correction (Blanc & Rendle 2018).

    hidden (R, d) and targets (R,) of the rows with a target; candidates (C,) item ids shared by
    the rows and log_expected (C,) the log of how often each was expected to be drawn. Row r
    scores its target as is and every candidate j as s_j − log E_j, with candidates equal to
    the target (accidental hits) removed:

        loss_r = −s_t + log(exp(s_t) + Σ_j exp(s_j − log E_j))

    Σ_j exp(s_j − log E_j) is an unbiased estimate of Σ_{i≠t} exp(s_i), so as C grows the loss
    and its gradient approach the full softmax's, whatever the sampling distribution.
    """
    pos = (hidden * item_weight[targets]).sum(-1, keepdim=True).float()  # (R, 1)
    # float32 before the correction: in bf16, log E_j (up to ~15) would lose its decimals
    neg = (hidden @ item_weight[candidates].T).float() - log_expected.float()  # (R, C)
    neg = neg.masked_fill(candidates.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
    return F.cross_entropy(torch.cat([pos, neg], dim=1), torch.zeros_like(targets))


class SequentialRecommender(nn.Module):
    """Base class: embedding, tied head, loss. Subclasses implement `encode`."""

    config: object

    def __init__(self, num_items: int, d_model: int, max_len: int, dropout: float) -> None:
        super().__init__()
        self.embedding = ItemEmbedding(num_items, d_model, max_len, dropout)
        self.final_norm = nn.LayerNorm(d_model)
        self.loss_type = "full"  # "full" or "sampled"; the trainer may switch it
        # where loss_type "sampled" draws its negatives; the trainer sets it from the data
        self.negative_sampler: NegativeSampler | None = None

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

    def user_state(self, item_ids: torch.Tensor) -> torch.Tensor:
        """(B, d): the hidden state after the last item; item i scores user_state · item_weight[i].

        What evaluation and top-k read instead of `forward`'s (B, |I|+1) logits, so that they
        can score the catalogue a chunk of items at a time."""
        return self.encode(item_ids)[:, -1]

    def loss_from_hidden(self, hidden: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
        hidden = hidden.reshape(-1, hidden.shape[-1])  # (B·N, d)
        targets = target_ids.reshape(-1)
        if self.loss_type == "sampled":
            if self.negative_sampler is None:
                raise ValueError("loss_type 'sampled' needs model.negative_sampler to be set")
            keep = targets != PAD
            hidden, targets = hidden[keep], targets[keep]
            candidates, log_expected = self.negative_sampler.candidates(targets)
            return sampled_softmax_loss(
                hidden, self.item_weight, targets, candidates, log_expected
            )
        return full_softmax_loss(hidden, self.item_weight, targets)

    def parameter_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        """(parameters, learning-rate scale) pairs for the optimizer: one group by default."""
        return [(list(self.parameters()), 1.0)]

    def config_dict(self) -> dict:
        return asdict(self.config)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
