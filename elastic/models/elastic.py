"""ELASTIC: linear dispatcher attention over a product-key interest memory.

Read top to bottom:

1. ``HierarchicalQueryNetwork`` reads a user's history in O(N) (windowed attention + pooling,
   level by level) into one retrieval query q.
2. ``ProductKeyMemory`` retrieves the user's k interest experts (dispatchers) from K = n² slots
   with product keys: O((n + k'²)·d_q) instead of O(K·d_q). Their log-gates reach the loss as
   a prior on the stage-2 logits.
3. ``LinearDispatcherAttention``: stage 1 *compresses* the N history tokens into k interest
   vectors (k × N weights), stage 2 *dispatches* them back to every token (N × k weights).
   Both cost O(N·k·d); nothing N × N is ever formed. Causal — position t only sees tokens
   <= t — as a prefix softmax computed with cumulative sums, chunk by chunk. Each dispatcher
   also sees itself as a token before the history (its *sink*): with nothing of its interest
   in view it returns its own memory value, and the softmax denominator is never below 1.
   The layer is one segment step: a history is processed segment by segment from the sinks'
   state, and the carried state makes that equal to one pass.
4. ``ElasticModel`` assembles them with leak-free retrieval: during training the query reads a
   random context prefix x_1..x_c and the loss only covers positions whose targets lie after c.

The naive references the fast kernels are held equal to live in `elastic.models.reference`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from elastic.models.common import PAD, SequentialRecommender

# Stage-1 exponents lie in (-2·cap, 2·cap). Up to cap 20 the float32 kernel's gradients are as
# accurate as the naive float32 softmax's (tests/models); at 30 (e^60) they lose 2 digits.
MAX_SOFTCAP = 20.0
# Training rebuilds each segment in backward from this max_len on: below it the saved
# activations of a batch of 32 stay under ~1 GiB (817 MiB predicted at N = 1024), and
# recomputing cost 27 % of a training step at N = 1024 (benchmarks/results/train-step.md).
RECOMPUTE_FROM = 2048


@dataclass
class ElasticConfig:
    num_items: int = 1000  # catalogue size |I| (ids 1..|I|, 0 = padding)
    max_len: int = 200  # N: the most recent N items of a history are used
    d_model: int = 64  # d: embedding and hidden width
    num_layers: int = 2  # L: linear dispatcher attention layers
    num_heads: int = 2  # h: heads per layer (d_model must divide by it)
    dropout: float = 0.2  # on embeddings, layer outputs and feed-forward
    ffn_mult: int = 4  # feed-forward width = ffn_mult × d_model
    num_interests: int = 8  # k: dispatchers (interest experts) retrieved per user
    num_slots: int = 256  # K = n²: interest memory slots (a perfect square)
    subkey_topk: int | None = None  # k': candidates per product-key half (None → k; >= k: exact)
    query_window: int = 16  # w: window of the query network's local self-attention
    query_pool: int = 4  # p: the query network shortens the sequence by p per level
    gate_temperature: float = 1.0  # τ in gates = softmax(scores / τ)
    stage1_softcap: float = 15.0  # stage-1 logits = cap·tanh(s/cap), cap in (0, 20]
    chunk_size: int = 64  # C: causal form works in chunks of C tokens (cost ∝ N·C)
    context_max_frac: float = 0.5  # training: query context c ~ U{1..max(1, ⌊frac·len⌋)}
    balance_weight: float = 0.01  # weight of the slot load-balancing loss (0 = off)
    memory_lr_scale: float = 1.0  # learning rate of memory values and sub-keys ÷ the model's
    stream_segment: int = 256  # S: histories are processed S tokens at a time
    recompute: bool | None = None  # training: segments rebuilt in backward (None: max_len >=
    # RECOMPUTE_FROM)
    local_window: int = 8  # w_l: tokens also attend to their w_l most recent items (0 = off)
    stage1_scale: float = 10.0  # s: stage-1 logits are s·cos(dispatcher, token), s learned per
    # head from this value (QK-norm; docs/decisions.md); 0: scaled dot products, as before

    def __post_init__(self) -> None:
        problems = []
        for name in ("num_items", "max_len", "d_model", "num_layers", "num_heads", "ffn_mult",
                     "num_interests", "num_slots", "query_window", "chunk_size",
                     "stream_segment"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1 (got {getattr(self, name)})")
        if problems:
            raise ValueError("; ".join(problems))
        n = math.isqrt(self.num_slots)
        if n * n != self.num_slots:
            problems.append(f"num_slots must be a perfect square (K = n²), got {self.num_slots}")
        if self.d_model % self.num_heads:
            problems.append(f"d_model {self.d_model} must be divisible by num_heads "
                            f"{self.num_heads}")
        if self.d_model % 2:
            problems.append(f"d_model must be even (the query is split in two halves), got "
                            f"{self.d_model}")
        if self.num_interests > self.num_slots:
            problems.append(f"num_interests (k = {self.num_interests}) cannot exceed num_slots "
                            f"(K = {self.num_slots})")
        elif self.subkey_topk is not None and self.subkey_topk < 1:
            problems.append(f"subkey_topk must be at least 1 (got {self.subkey_topk})")
        elif self.candidates**2 < self.num_interests:
            problems.append(f"subkey_topk k' = {self.candidates} gives k'² = "
                            f"{self.candidates**2} candidate slots, fewer than k = "
                            f"{self.num_interests}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must lie in [0, 1) (got {self.dropout})")
        if self.query_pool < 2:
            problems.append(f"query_pool must be at least 2 (got {self.query_pool})")
        if not self.gate_temperature > 0:
            problems.append(f"gate_temperature must be positive (got {self.gate_temperature})")
        if not 0.0 < self.stage1_softcap <= MAX_SOFTCAP:
            problems.append(f"stage1_softcap must lie in (0, {MAX_SOFTCAP:g}] (got "
                            f"{self.stage1_softcap}): larger caps overflow float32 exponents")
        if not 0.0 <= self.context_max_frac <= 1.0:
            problems.append(f"context_max_frac must lie in [0, 1] (got {self.context_max_frac})")
        if not (math.isfinite(self.stage1_scale) and self.stage1_scale >= 0):
            problems.append(f"stage1_scale must be a finite number >= 0 (got "
                            f"{self.stage1_scale})")
        if self.balance_weight < 0 or self.local_window < 0 or not self.memory_lr_scale > 0:
            problems.append("balance_weight and local_window must be >= 0 and memory_lr_scale "
                            "> 0")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def candidates(self) -> int:
        """k': sub-keys kept per half."""
        kp = self.subkey_topk or self.num_interests
        return min(kp, math.isqrt(self.num_slots))


@dataclass
class ElasticIntermediates:
    """Everything the app draws, from one forward pass (no hooks).

    Stage 1 is a prefix softmax: at position t dispatcher j has read tokens <= t. The stage-1
    weights given here are those of the interest vectors the *last* position reads (the
    whole history); stage-2 row t is position t's weights over the interest vectors *at t*.
    The last row of stage 2 and the stage-1 weights are therefore one consistent pair — the
    two stages of the prediction the model makes.

    The logits are what enters each softmax, so a view can show the softmax of one weight with
    its real numbers: stage-1 weights = softmax over [sink logit, stage-1 logits] (the logits
    already capped, cap·tanh(s/cap); −inf at padding), stage-2 weights = softmax over the k
    stage-2 logits (q_t·I_j(t)/√dh + log g_j; −inf for a knocked-out dispatcher).
    """

    stage1_weights: torch.Tensor  # (B, L, h, k, N): dispatcher j's weights over the history
    stage2_weights: torch.Tensor  # (B, L, h, N, k): token t's weights over the k interests
    slot_ids: torch.Tensor  # (B, k): retrieved memory slots, best first
    gates: torch.Tensor  # (B, k): softmax gates of those slots
    query: torch.Tensor  # (B, d_q): the retrieval query
    interest_vectors: torch.Tensor  # (B, L, k, d): stage-1 output over the whole history
    memory_scores: torch.Tensor = field(repr=False)  # (B, k): product-key scores of the slots
    # (B, L, h, k): the weight each dispatcher keeps on itself (its memory value), = 1 − Σ_N
    stage1_sink: torch.Tensor | None = field(default=None, repr=False)
    stage1_logits: torch.Tensor | None = field(default=None, repr=False)  # (B, L, h, k, N)
    stage1_sink_logits: torch.Tensor | None = field(default=None, repr=False)  # (B, L, h, k)
    stage2_logits: torch.Tensor | None = field(default=None, repr=False)  # (B, L, h, N, k)


@dataclass(frozen=True)
class Intervention:
    """A change to one forward pass, to ask what a mechanism does (`Intervention()` = none).

    An attention map shows where weight goes; an intervention shows what the prediction does
    without it. The ablation harness (`elastic.ablation`) and the app use these.
    """

    knockout: tuple[int, ...] = ()  # dispatchers (0 = best slot) removed: stage-2 weight 0
    donor_ids: torch.Tensor | None = None  # (B, N') retrieve with these histories instead
    slot_ids: torch.Tensor | None = None  # (B, k) use these slots (gates from their scores)
    dispatch: bool = True  # False: the dispatcher branch is removed (local window only)
    local_window: bool = True  # False: the local window branch is removed
    query_context: torch.Tensor | None = None  # (B,) the query reads the first c items only


# ----------------------------------------------------------------------------------------------
# 1. Hierarchical query network
# ----------------------------------------------------------------------------------------------


def _left_pad_to_multiple(x: torch.Tensor, mask: torch.Tensor, m: int):
    """Left-pad (B, n, d) and its mask (B, n) so n is a multiple of m. Groups are anchored at the
    right end, so extra left padding never regroups real tokens."""
    extra = (-x.shape[1]) % m
    if extra:
        x = F.pad(x, (0, 0, extra, 0))
        mask = F.pad(mask, (extra, 0), value=False)
    return x, mask


class WindowSelfAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping windows of w tokens: O(N·w·d).

    Windows are independent, so they are attended a slice of several windows at a time: the
    scores exist for one slice only (O(segment) memory whatever N is)."""

    def __init__(self, d: int, heads: int, window: int, segment: int) -> None:
        super().__init__()
        self.h, self.w = heads, window
        self.segment = window * max(1, segment // window)  # tokens per slice: whole windows
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor):
        x, mask = _left_pad_to_multiple(x, mask, self.w)
        # split, not slicing: a slice's backward fills a zero tensor of x's full size per slice
        parts = [self._attend(xs, ms) for xs, ms in
                 zip(x.split(self.segment, 1), mask.split(self.segment, 1), strict=True)]
        return (parts[0] if len(parts) == 1 else torch.cat(parts, 1)), mask

    def _attend(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        nw, dh = n // self.w, d // self.h
        q, k, v = self.qkv(self.norm(x)).split(d, dim=-1)
        q, k, v = (t.view(b * nw, self.w, self.h, dh).transpose(1, 2) for t in (q, k, v))
        # (B·nw, h, w, dh)
        keys = mask.reshape(b * nw, 1, 1, self.w)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(dh)  # (B·nw, h, w, w)
        scores = scores.masked_fill(~keys, torch.finfo(scores.dtype).min)
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)
        return (x + self.proj(y)) * mask.unsqueeze(-1)


class LinearPool(nn.Module):
    """Shorten the sequence by p: each output is a learned weighted average of p neighbours,
    renormalised over the real (non-pad) ones."""

    def __init__(self, pool: int) -> None:
        super().__init__()
        self.p = pool
        self.logits = nn.Parameter(torch.zeros(pool))

    def forward(self, x: torch.Tensor, mask: torch.Tensor):
        x, mask = _left_pad_to_multiple(x, mask, self.p)
        b, n, d = x.shape
        groups = mask.view(b, n // self.p, self.p)  # (B, n/p, p)
        w = self.logits.softmax(0) * groups  # (B, n/p, p)
        w = w / w.sum(-1, keepdim=True).clamp_min(1e-9)
        pooled = (w.unsqueeze(-1) * x.view(b, n // self.p, self.p, d)).sum(2)  # (B, n/p, d)
        return pooled, groups.any(-1)


class HierarchicalQueryNetwork(nn.Module):
    """History (B, N, d) -> retrieval query (B, d_q) in O(N·w·d).

    Level by level: window attention, then pool by p, until one window is left; an attention
    pooling token reads that window. The input is left-padded to max_len first, so the number of
    levels — and the output — does not depend on how much padding a batch carries.
    """

    def __init__(self, config: ElasticConfig) -> None:
        super().__init__()
        d, w, p = config.d_model, config.query_window, config.query_pool
        self.max_len = config.max_len
        levels, n = 0, config.max_len
        while n > w:
            n, levels = math.ceil(n / p), levels + 1
        self.attn = nn.ModuleList(
            WindowSelfAttention(d, config.num_heads, w, config.stream_segment)
            for _ in range(levels + 1)
        )
        self.pools = nn.ModuleList(LinearPool(p) for _ in range(levels))
        self.read_token = nn.Parameter(torch.randn(d) * d**-0.5)
        self.read_kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)  # LayerNorm, not BatchNorm: no statistics across users

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, self.max_len - x.shape[1], 0))  # (B, max_len, d)
        mask = F.pad(mask, (self.max_len - mask.shape[1], 0), value=False)
        for attn, pool in zip(self.attn, self.pools, strict=False):
            x, mask = attn(x, mask)
            x, mask = pool(x, mask)
        x, mask = self.attn[-1](x, mask)  # the last window, (B, <=w, d)
        k, v = self.read_kv(x).chunk(2, dim=-1)
        scores = (k @ self.read_token) / math.sqrt(x.shape[-1])  # (B, n)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        read = (scores.softmax(-1).unsqueeze(-1) * v).sum(1)  # (B, d)
        return self.norm(self.out(read))


# ----------------------------------------------------------------------------------------------
# 2. Product-key interest memory
# ----------------------------------------------------------------------------------------------


@dataclass
class Retrieval:
    slot_ids: torch.Tensor  # (B, k)
    scores: torch.Tensor  # (B, k), best first
    log_gates: torch.Tensor  # (B, k) = log_softmax(scores / τ): the stage-2 prior
    dispatchers: torch.Tensor  # (B, k, d) = V[slot_ids]
    balance_loss: torch.Tensor  # scalar, 1.0 when the slots are used evenly

    @property
    def gates(self) -> torch.Tensor:
        return self.log_gates.exp()  # (B, k)


class ProductKeyMemory(nn.Module):
    """K = n² interest experts V, addressed by two sub-key tables C₁, C₂ ∈ R^{n × d_q/2}.

    score(slot i·n + j) = q₁·C₁[i] + q₂·C₂[j]. The best k of all K slots lie among the k'² pairs
    of the per-half top-k' (k'² >= k), so retrieval is exact at O((n + k'²)·d_q) cost.
    """

    def __init__(self, config: ElasticConfig) -> None:
        super().__init__()
        self.n = math.isqrt(config.num_slots)
        self.k = config.num_interests
        self.kp = config.candidates
        half = config.d_model // 2
        self.subkeys = nn.Parameter(torch.randn(2, self.n, half) * half**-0.5)  # C₁, C₂
        self.values = nn.Embedding(config.num_slots, config.d_model)  # V: the interest experts
        nn.init.normal_(self.values.weight, std=config.d_model**-0.5)
        self.tau = config.gate_temperature

    def half_scores(self, query: torch.Tensor) -> torch.Tensor:
        q = query.view(query.shape[0], 2, -1)  # (B, 2, d_q/2)
        return torch.einsum("bhd,hnd->bhn", q, self.subkeys)  # (B, 2, n)

    def forward(self, query: torch.Tensor) -> Retrieval:
        s = self.half_scores(query)  # (B, 2, n)
        top_s, top_i = s.topk(self.kp, dim=-1)  # (B, 2, k')
        pair_scores = top_s[:, 0, :, None] + top_s[:, 1, None, :]  # (B, k', k')
        pair_slots = top_i[:, 0, :, None] * self.n + top_i[:, 1, None, :]  # (B, k', k')
        scores, best = pair_scores.flatten(1).topk(self.k, dim=-1)  # (B, k)
        slot_ids = pair_slots.flatten(1).gather(1, best)  # (B, k)
        return self._retrieval(s, slot_ids, scores)

    def for_slots(self, query: torch.Tensor, slot_ids: torch.Tensor) -> Retrieval:
        """The retrieval a query would get had it picked `slot_ids` (B, k): their scores for
        this query, and gates from those scores (an intervention: random or donated slots)."""
        s = self.half_scores(query)  # (B, 2, n)
        scores = s[:, 0].gather(1, slot_ids // self.n) + s[:, 1].gather(1, slot_ids % self.n)
        return self._retrieval(s, slot_ids, scores)

    def _retrieval(self, s: torch.Tensor, slot_ids: torch.Tensor, scores) -> Retrieval:
        return Retrieval(
            slot_ids=slot_ids,
            scores=scores,
            log_gates=(scores / self.tau).log_softmax(-1),  # not log(softmax): no dead gates
            dispatchers=self.values(slot_ids),
            balance_loss=self.balance(s, slot_ids),
        )

    def balance(self, s: torch.Tensor, slot_ids: torch.Tensor) -> torch.Tensor:
        """Switch-Transformer load balancing over the K slots: K · Σ_slot f · P, where f is the
        share of the batch's retrievals that picked the slot (counted, no gradient) and P the
        batch-mean probability of the slot under softmax over all K scores. P factorises over
        the halves — softmax(s₁ᵢ + s₂ⱼ) = softmax(s₁)ᵢ·softmax(s₂)ⱼ — so the batch mean is
        P₁ᵀP₂ / B, (n × n), never (B × K). 1.0 when retrievals and probabilities are uniform;
        minimising it moves probability off the slots the batch overuses."""
        b = s.shape[0]
        p = s.softmax(-1)  # (B, 2, n)
        mean_prob = (p[:, 0].transpose(0, 1) @ p[:, 1]).flatten() / b  # (K,)
        share = torch.bincount(slot_ids.flatten(), minlength=self.n * self.n)
        share = share.to(mean_prob.dtype) / slot_ids.numel()  # (K,), sums to 1
        return self.n * self.n * (share * mean_prob).sum()

    def brute_force(self, query: torch.Tensor):
        """Reference: score all K slots and take the top-k. Returns (slot_ids, gates)."""
        s = self.half_scores(query)
        all_scores = (s[:, 0, :, None] + s[:, 1, None, :]).flatten(1)  # (B, K)
        scores, slot_ids = all_scores.topk(self.k, dim=-1)
        return slot_ids, (scores / self.tau).softmax(-1)


def memory_usage(slot_ids: torch.Tensor, num_slots: int) -> dict:
    """Usage of the interest memory over many users: slot_ids (U, k) -> statistics.

    `kl_to_uniform` is KL(usage ‖ uniform) in nats: 0 when every slot is retrieved equally
    often, log K when one slot takes everything.
    """
    counts = torch.bincount(slot_ids.flatten().cpu(), minlength=num_slots).double()
    p = counts / counts.sum().clamp_min(1)
    nz = p > 0
    kl = float((p[nz] * (p[nz] * num_slots).log()).sum())
    return {
        "counts": counts.long(),
        "share_used": float(nz.double().mean()),
        "dead_slots": int((~nz).sum()),
        "kl_to_uniform": kl,
        "max_share": float(p.max()),
    }


# ----------------------------------------------------------------------------------------------
# 3. Linear dispatcher attention
# ----------------------------------------------------------------------------------------------


def softcap(x: torch.Tensor, cap: float) -> torch.Tensor:
    """cap·tanh(x / cap): x where |x| << cap, never beyond ±cap."""
    return cap * torch.tanh(x / cap)


def causal_dispatch(dq, kx, vx, q2, log_gates, valid, cap: float, chunk: int, shift, num, den):
    """Causal linear dispatcher attention over one segment, in O(n·k·dh + n·C·(dh + k)).

    Stage 1, a prefix softmax per dispatcher j over its sink and the tokens s <= t:
        interest_j(t) = num_j(t) / den_j(t),  num_j(t) = num_j + Σ_{s<=t} e_js v_s,
        den_j(t) = den_j + Σ_{s<=t} e_js,     e_js = exp(a_js − shift_j),
    with a = capped logits; (num, den) (B,h,k,dh), (B,h,k) is the state before the segment.
    At the start of a history it holds the sink alone: e_j0 = exp(a_j0 − shift_j) and
    (e_j0·v_j0, e_j0), with shift_j = a_j0 held constant (detached), so e_j0 = 1 and the sink's
    gradient flows through the state, never through a cancelling sum over the tokens. Stage 2:
        out_t = Σ_j softmax_j(q_t·interest_j(t)/√dh + log g_j) · interest_j(t).

    The (n, k, dh) prefix states are never formed. Chunkwise-parallel, as in chunked linear
    attention: within a chunk of C tokens the terms q_t·num_j(t) and Σ_j u_tj num_j(t) are
    (C × C) lower-triangular matmuls shared by all k dispatchers; across chunks a carry
    (k, dh) per chunk holds the sums of all earlier chunks. No Python loop over N.

    Stability in float32, for any logits: exponents are relative to the sink, so they lie in
    (−2·cap, 2·cap) (no overflow, and full precision for cap <= 20), and den >= 1 (the sink),
    so dividing by it — forward or backward — never divides by a vanishing sum.
    `shift` (B,h,k) must lie in (−cap, cap): the sink's capped logit.
    Returns out (B,h,n,dh), the stage-2 logits (B,h,n,k) — the weights are their softmax over
    k — and (num, den) after the segment.
    """
    dtype = vx.dtype
    work = torch.promote_types(dtype, torch.float32)  # never scan in half precision
    dq, kx, vx, q2, num, den = (t.to(work) for t in (dq, kx, vx, q2, num, den))
    n, dh = kx.shape[2], kx.shape[3]
    chunk = min(chunk, n)
    a = softcap(dq @ kx.transpose(-2, -1) / math.sqrt(dh), cap)  # (B,h,k,n)
    e = torch.exp(a - shift.to(work)[..., None]).transpose(-2, -1)  # (B,h,n,k)
    e = e * valid[:, None, :, None]  # 0 at pads
    den_t = torch.cumsum(e, dim=2) + den[:, :, None, :]  # (B,h,n,k) >= 1
    pad = (-n) % chunk  # left-pad n to a multiple of C (pads have e = 0: no effect)
    # contiguous either way, so the chunk views below reach bmm without a copy per product;
    # padded rows get den 1, so that nothing divides by 0 even in rows that are dropped
    e_c, v_c, q_c, den_c = (
        F.pad(t, (0, 0, pad, 0), value=fill) if pad else t.contiguous()
        for t, fill in ((e, 0.0), (vx, 0.0), (q2, 0.0), (den_t, 1.0))
    )
    b, h, np_, k = e_c.shape
    nc = np_ // chunk
    e_c, den_c = e_c.view(b, h, nc, chunk, k), den_c.view(b, h, nc, chunk, k)
    v_c, q_c = v_c.view(b, h, nc, chunk, dh), q_c.view(b, h, nc, chunk, dh)  # (B,h,nc,C,dh)
    chunk_kv = e_c.transpose(-2, -1) @ v_c  # (B,h,nc,k,dh): Σ_{s in chunk} e_js v_s
    inclusive = torch.cumsum(chunk_kv, dim=2)
    num_after = inclusive[:, :, -1] + num  # (B,h,k,dh)
    # exclusive: the sums of all earlier chunks, plus the state before the segment
    carry = torch.cat([torch.zeros_like(inclusive[:, :, :1]), inclusive[:, :, :-1]], dim=2)
    carry = carry + num[:, :, None]  # (B,h,nc,k,dh)
    tril = torch.ones(chunk, chunk, dtype=torch.bool, device=e.device).tril()  # [t, s]: s <= t
    qv = (q_c @ v_c.transpose(-2, -1)).masked_fill_(~tril, 0.0)  # (B,h,nc,C,C): q_t·v_s
    qnum = qv @ e_c + q_c @ carry.transpose(-2, -1)  # (B,h,nc,C,k): q_t·num_j(t)
    logits = qnum / den_c / math.sqrt(dh) + log_gates.to(work)[:, None, None, None, :]
    w2 = logits.softmax(-1)  # (B,h,nc,C,k)
    u = w2 / den_c  # out_t = Σ_j u_tj num_j(t)
    ue = (u @ e_c.transpose(-2, -1)).masked_fill_(~tril, 0.0)  # (B,h,nc,C,C): Σ_j u_tj e_js
    out = (ue @ v_c).add_(u @ carry)  # (B,h,nc,C,dh); in place: bmm's backward needs no output
    out = out.reshape(b, h, np_, dh)[:, :, pad:]
    return out.to(dtype), logits.reshape(b, h, np_, k)[:, :, pad:], num_after, den_t[:, :, -1]


def stage1_logits(dq, kx, valid, cap: float) -> torch.Tensor:
    """Capped stage-1 logits a = cap·tanh(dq·kx/√dh / cap) (B,h,k,N), −inf at padding."""
    a = softcap(dq @ kx.transpose(-2, -1) / math.sqrt(dq.shape[-1]), cap)  # (B,h,k,N)
    return a.masked_fill(~valid[:, None, None, :], float("-inf"))


def stage1_weights(dq, kx, valid, cap: float, sink: torch.Tensor):
    """Stage-1 softmax over the sink and all real tokens (what the last position reads).

    Returns the token weights (B,h,k,N) and the sink's weight (B,h,k); they sum to 1."""
    return stage1_softmax(stage1_logits(dq, kx, valid, cap), sink)


def stage1_softmax(logits: torch.Tensor, sink: torch.Tensor):
    """softmax over [sink (B,h,k), logits (B,h,k,N)] -> token weights (B,h,k,N), sink (B,h,k)."""
    w = torch.cat([sink.unsqueeze(-1), logits], -1).softmax(-1)  # (B,h,k,1+N)
    return w[..., 1:], w[..., 0]


def local_attention(q, k, v, valid, window: int):
    """Causal sliding-window attention: token t attends to the real tokens s in (t - w, t].

    q, k, v (B,h,N,dh) -> (B,h,N,dh) in O(N·w·dh): blocks of w queries see their own block
    and the previous one (2w keys), masked to the window. This is the recency branch of a
    dispatcher layer (global dispatchers + a local window, as Longformer pairs global tokens
    with a sliding window).
    """
    b, h, n, dh = k.shape
    w = min(window, n)
    pad = (-n) % w
    q, k, v = (F.pad(t, (0, 0, pad, 0)) for t in (q, k, v))
    keys_valid = F.pad(valid, (pad, 0), value=False)
    nb = (n + pad) // w

    def with_previous(t):  # (B,h,nb,w,·) -> (B,h,nb,2w,·): previous block, then own block
        prev = torch.cat([torch.zeros_like(t[:, :, :1]), t[:, :, :-1]], dim=2)
        return torch.cat([prev, t], dim=3)

    kb = with_previous(k.view(b, h, nb, w, dh))
    vb = with_previous(v.view(b, h, nb, w, dh))
    mb = with_previous(keys_valid.view(b, 1, nb, w, 1)).transpose(-2, -1)  # (B,1,nb,1,2w)
    r = torch.arange(w, device=k.device)[:, None]  # query offset in its block
    c = torch.arange(2 * w, device=k.device)[None, :]  # key offset in [previous, own]
    in_window = (c > r) & (c <= r + w)  # (w, 2w): s in (t - w, t]
    scores = (q.view(b, h, nb, w, dh) @ kb.transpose(-2, -1)) / math.sqrt(dh)  # (B,h,nb,w,2w)
    scores = scores.masked_fill(~(in_window & mb), torch.finfo(scores.dtype).min)
    out = (scores.softmax(-1) @ vb).view(b, h, nb * w, dh)[:, :, pad:]
    return out * valid[:, None, :, None]


class Dispatchers(NamedTuple):
    """A layer's per-user dispatcher terms, computed once per history."""

    queries: torch.Tensor  # (B,h,k,dh): stage-1 queries
    sink_logit: torch.Tensor  # (B,h,k): each dispatcher's capped logit on itself (< cap)
    sink_value: torch.Tensor  # (B,h,k,dh): its value, what it returns with nothing in view
    log_gates: torch.Tensor  # (B,k): stage-2 prior (−inf = knocked out)


class LayerState(NamedTuple):
    """What a causal layer carries from one segment to the next."""

    num: torch.Tensor  # (B,h,k,dh): Σ e·v over the sink and the tokens so far
    den: torch.Tensor  # (B,h,k): Σ e, >= 1
    tail_k: torch.Tensor  # (B,h,w',dh): keys of the last w' <= w_l tokens (local window)
    tail_v: torch.Tensor  # (B,h,w',dh)
    tail_valid: torch.Tensor  # (B,w')


@dataclass(frozen=True)
class Branches:
    dispatch: bool = True  # the dispatcher branch (stages 1 and 2)
    window: bool = True  # the local-window branch


class LinearDispatcherAttention(nn.Module):
    """Pre-LN layer: x + dispatch(LN(x)) [+ local window], then x + FFN(LN(x)).

    Per head, the dispatchers give the stage-1 queries; tokens give keys and values; tokens
    query the interest vectors in stage 2, whose log-gates are a prior over the k interests
    (how retrieval reaches the loss). `forward` is the causal segment step; `last` is the
    output of the last position only (inference); `maps` gives the attention weights.
    """

    def __init__(self, config: ElasticConfig) -> None:
        super().__init__()
        d = config.d_model
        self.h, self.cap, self.chunk = config.num_heads, config.stage1_softcap, config.chunk_size
        self.local_window = config.local_window
        self.s1_scale = (nn.Parameter(torch.full((self.h,), float(config.stage1_scale)))
                         if config.stage1_scale else None)
        self.norm1 = nn.LayerNorm(d)
        self.dispatcher_q = nn.Linear(d, d)  # stage-1 queries from the dispatchers
        self.token_kvq = nn.Linear(d, 3 * d)  # stage-1 keys, values; stage-2 queries
        self.proj = nn.Linear(d, d)
        self.dropout = nn.Dropout(config.dropout)
        self.norm2 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(
            nn.Linear(d, config.ffn_mult * d),
            nn.GELU(),
            nn.Linear(config.ffn_mult * d, d),
            nn.Dropout(config.dropout),
        )

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, d = t.shape
        return t.view(b, n, self.h, d // self.h).transpose(1, 2)  # (B, h, n, dh)

    def _tokens(self, x: torch.Tensor):
        """Keys, values and stage-2 queries of tokens x (B,n,d), each (B,h,n,dh)."""
        return tuple(self._heads(t) for t in self.token_kvq(self.norm1(x)).split(x.shape[-1], -1))

    def prepare(self, dispatchers: torch.Tensor, log_gates: torch.Tensor) -> Dispatchers:
        """dispatchers (B,k,d) -> their stage-1 queries, and each one seen as a token (sink)."""
        dq = self._heads(self.dispatcher_q(dispatchers))  # (B,h,k,dh)
        kd, vd, _ = self._tokens(dispatchers)
        if self.s1_scale is not None:  # s·cos: the kernels' 1/√dh is folded into the queries
            dq = F.normalize(dq, dim=-1) * (self.s1_scale[:, None, None] * dq.shape[-1] ** 0.5)
            kd = F.normalize(kd, dim=-1)
        sink = softcap((dq * kd).sum(-1) / math.sqrt(dq.shape[-1]), self.cap)  # (B,h,k)
        return Dispatchers(dq, sink, vd, log_gates)

    def initial_state(self, terms: Dispatchers) -> LayerState:
        """The state before any token: each dispatcher has seen only itself."""
        b, h, _k, dh = terms.queries.shape
        sink = torch.exp(terms.sink_logit - terms.sink_logit.detach())  # 1, with a gradient
        empty = terms.queries.new_zeros(b, h, 0, dh)
        return LayerState(sink.unsqueeze(-1) * terms.sink_value, sink, empty, empty,
                          torch.zeros(b, 0, dtype=torch.bool, device=empty.device))

    def forward(self, x: torch.Tensor, terms: Dispatchers, valid: torch.Tensor,
                state: LayerState, branches: Branches = Branches()):
        """The causal segment step: x (B,n,d) and valid (B,n) are the n tokens that follow
        `state`. Returns (output (B,n,d), the state after them, stage-2 logits (B,h,n,k))."""
        n = x.shape[1]
        kx, vx, q2 = self._tokens(x)
        y, logits2, num, den = causal_dispatch(terms.queries, self._keys1(kx), vx, q2,
                                               terms.log_gates, valid, self.cap, self.chunk,
                                               terms.sink_logit.detach(), state.num, state.den)
        if not branches.dispatch:
            y = torch.zeros_like(y)
        tail_k, tail_v, tail_valid = state.tail_k, state.tail_v, state.tail_valid
        if self.local_window:
            keys = torch.cat([tail_k, kx], 2)
            values = torch.cat([tail_v, vx], 2)
            keys_valid = torch.cat([tail_valid, valid], 1)
            if branches.window:
                queries = F.pad(q2, (0, 0, keys.shape[2] - n, 0))  # no queries for the tail
                y = y + local_attention(queries, keys, values, keys_valid,
                                        self.local_window)[:, :, -n:]
            w = self.local_window
            tail_k, tail_v, tail_valid = keys[:, :, -w:], values[:, :, -w:], keys_valid[:, -w:]
        return (self._residual(x, y), LayerState(num, den, tail_k, tail_v, tail_valid), logits2)

    def last(self, x: torch.Tensor, terms: Dispatchers, valid: torch.Tensor,
             branches: Branches = Branches()) -> torch.Tensor:
        """Output of the last position only (B,1,d): stage 1 is one softmax over the whole
        history, stage 2 and the window one query. Equals forward(...)[0][:, -1:]."""
        kx, vx, q2 = self._tokens(x)
        q_last = q2[:, :, -1:]  # (B,h,1,dh)
        y = torch.zeros_like(q_last)
        if branches.dispatch:
            w1, sink = stage1_weights(terms.queries, self._keys1(kx), valid, self.cap,
                                      terms.sink_logit)
            interests = w1 @ vx + sink.unsqueeze(-1) * terms.sink_value  # (B,h,k,dh)
            y = _stage2(q_last, interests, terms.log_gates)[0]
        if self.local_window and branches.window:
            w = self.local_window
            scores = (q_last @ kx[:, :, -w:].transpose(-2, -1)) / math.sqrt(kx.shape[-1])
            scores = scores.masked_fill(~valid[:, None, None, -w:], torch.finfo(y.dtype).min)
            y = y + scores.softmax(-1) @ vx[:, :, -w:]  # (B,h,1,dh)
        return self._residual(x[:, -1:], y)

    def maps(self, x: torch.Tensor, terms: Dispatchers, valid: torch.Tensor):
        """Stage-1 weights of the last position's interest vectors: tokens (B,h,k,N), sink
        (B,h,k), the interest vectors (B,k,d) they make, and the token logits (B,h,k,N) the
        weights are the softmax of (with the sink's, `terms.sink_logit`)."""
        kx, vx, _ = self._tokens(x)
        logits = stage1_logits(terms.queries, self._keys1(kx), valid, self.cap)
        w1, sink = stage1_softmax(logits, terms.sink_logit)
        interests = w1 @ vx + sink.unsqueeze(-1) * terms.sink_value  # (B,h,k,dh)
        b, d = x.shape[0], x.shape[-1]
        return w1, sink, interests.transpose(1, 2).reshape(b, -1, d), logits

    def _keys1(self, kx: torch.Tensor) -> torch.Tensor:
        """Stage-1 keys: the token keys, unit-normalised when stage 1 compares by cosine."""
        return kx if self.s1_scale is None else F.normalize(kx, dim=-1)

    def _residual(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, _, n, _ = y.shape
        x = x + self.dropout(self.proj(y.transpose(1, 2).reshape(b, n, x.shape[-1])))
        return x + self.ffn(self.norm2(x))


def _stage2(q: torch.Tensor, interests: torch.Tensor, log_gates: torch.Tensor):
    """q (B,h,n,dh) over interests (B,h,k,dh) -> out (B,h,n,dh), weights (B,h,n,k)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    w2 = ((q @ interests.transpose(-2, -1)) * scale + log_gates[:, None, None, :]).softmax(-1)
    return w2 @ interests, w2


# ----------------------------------------------------------------------------------------------
# 4. The model
# ----------------------------------------------------------------------------------------------


def take_prefix(item_ids: torch.Tensor, context_len: torch.Tensor) -> torch.Tensor:
    """The first c real items of each left-padded history, left-padded again so that they end
    at the last position — exactly what the query would read if the history stopped at c."""
    _b, n = item_ids.shape
    length = (item_ids != PAD).sum(1)  # (B,)
    shift = (length - context_len).clamp_min(0)  # how many recent items to hide
    src = torch.arange(n, device=item_ids.device)[None, :] - shift[:, None]  # (B, N)
    out = item_ids.gather(1, src.clamp_min(0))
    return out.masked_fill(src < 0, PAD)


class ElasticModel(SequentialRecommender):
    def __init__(self, config: ElasticConfig) -> None:
        super().__init__(config.num_items, config.d_model, config.max_len, config.dropout)
        self.config = config
        self.query_net = HierarchicalQueryNetwork(config)
        self.memory = ProductKeyMemory(config)
        self.layers = nn.ModuleList(
            LinearDispatcherAttention(config) for _ in range(config.num_layers)
        )

    @property
    def recompute(self) -> bool:
        auto = self.config.max_len >= RECOMPUTE_FROM  # long histories are memory-bound
        return auto if self.config.recompute is None else self.config.recompute

    def parameter_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        """(parameters, learning-rate scale): the memory's values and sub-keys learn at
        `memory_lr_scale` × the model's rate — each slot is updated only by the users who
        retrieve it, so it sees far fewer updates than a dense weight."""
        memory = list(self.memory.parameters())
        ids = {id(p) for p in memory}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return [(rest, 1.0), (memory, self.config.memory_lr_scale)]

    # -------------------------------------------------------------------------- retrieval

    def query(self, item_ids: torch.Tensor) -> torch.Tensor:
        """The retrieval query (B, d_q) of each history."""
        return self.query_net(self.embedding(item_ids), item_ids != PAD)

    def retrieve(self, item_ids: torch.Tensor, change: Intervention | None = None):
        """-> (retrieval, query): the user's k experts, read from `item_ids` (or as
        `change` says: another history, a prefix, forced slots)."""
        change = change or Intervention()
        query_ids = item_ids if change.donor_ids is None else change.donor_ids
        if change.query_context is not None:
            query_ids = take_prefix(query_ids, change.query_context)
        if self.recompute and torch.is_grad_enabled():  # rebuilt in backward, like the layers
            query = checkpoint(self.query, query_ids, use_reentrant=False)
        else:
            query = self.query(query_ids)
        if change.slot_ids is not None:
            return self.memory.for_slots(query, change.slot_ids), query
        return self.memory(query), query

    def _resolve(self, intervention: Intervention | None) -> Intervention:
        """The intervention to run: none → `Intervention()`; knocking out every dispatcher is
        the dispatcher branch removed (stage 2 would otherwise be a softmax over nothing)."""
        change = intervention or Intervention()
        if change.knockout and set(change.knockout) >= set(range(self.config.num_interests)):
            change = replace(change, knockout=(), dispatch=False)
        return change

    def _terms(self, retrieval: Retrieval, change: Intervention) -> list[Dispatchers]:
        log_gates = retrieval.log_gates
        if change.knockout:
            log_gates = log_gates.clone()
            log_gates[:, list(change.knockout)] = float("-inf")
        return [layer.prepare(retrieval.dispatchers, log_gates) for layer in self.layers]

    # -------------------------------------------------------------------------- layers

    def _causal(self, layer, x, terms, valid, branches, want_weights: bool = False):
        """One layer over the whole history, segment by segment: (B,N,d) and, if asked, the
        stage-2 logits (B,h,N,k) (the weights are their softmax)."""
        state = layer.initial_state(terms)
        recompute = self.recompute and torch.is_grad_enabled()
        outs, weights = [], []
        # split, not x[:, s0:s0+S]: a slice's backward fills a zero tensor of x's full size,
        # once per segment, which made training O(N²/S) in time
        segment = self.config.stream_segment
        for xs, vs in zip(x.split(segment, 1), valid.split(segment, 1), strict=True):
            if recompute:
                out, state, logits2 = checkpoint(layer, xs, terms, vs, state, branches,
                                                 use_reentrant=False)
            else:
                out, state, logits2 = layer(xs, terms, vs, state, branches)
            outs.append(out)
            if want_weights:
                weights.append(logits2)
        hidden = outs[0] if len(outs) == 1 else torch.cat(outs, 1)
        return hidden, (torch.cat(weights, 2) if want_weights else None)

    def encode(self, item_ids: torch.Tensor, context_len: torch.Tensor | None = None,
               intervention: Intervention | None = None) -> torch.Tensor:
        """Causal hidden states (B, N, d): position t sees items <= t. The query reads the
        first `context_len` real items (default: the whole history)."""
        change = self._resolve(intervention)
        if context_len is not None:
            change = replace(change, query_context=context_len)
        retrieval, _ = self.retrieve(item_ids, change)
        return self._encode(item_ids, retrieval, change)[0]

    def _encode(self, item_ids, retrieval: Retrieval, change: Intervention):
        x, valid = self.embedding(item_ids), item_ids != PAD
        branches = Branches(change.dispatch, change.local_window)
        for layer, terms in zip(self.layers, self._terms(retrieval, change), strict=True):
            x, _ = self._causal(layer, x, terms, valid, branches)
        return self.final_norm(x), retrieval

    def forward(
        self,
        item_ids: torch.Tensor,
        return_intermediates: bool = False,
        intervention: Intervention | None = None,
    ):
        """Next-item logits (B, |I|+1) at the last position (and the intermediates).

        Layers 1..L-1 run causally segment by segment; the last layer computes the last
        position only. `intervention` changes the pass (knock out dispatchers, another user's
        experts, forced slots, a branch off): what the app's experiments and
        `elastic.ablation` use."""
        if return_intermediates:
            change = self._resolve(intervention)
            retrieval, query = self.retrieve(item_ids, change)
            return self._with_intermediates(item_ids, retrieval, query, change)
        return self.scores(self.user_state(item_ids, intervention))

    def user_state(self, item_ids: torch.Tensor,
                   intervention: Intervention | None = None) -> torch.Tensor:
        """(B, d): the hidden state after the last item, what `forward` scores the catalogue
        with (evaluation reads it to score a chunk of items at a time)."""
        change = self._resolve(intervention)
        retrieval, _ = self.retrieve(item_ids, change)
        x, valid = self.embedding(item_ids), item_ids != PAD
        branches = Branches(change.dispatch, change.local_window)
        terms = self._terms(retrieval, change)
        for layer, layer_terms in zip(self.layers[:-1], terms[:-1], strict=True):
            x, _ = self._causal(layer, x, layer_terms, valid, branches)
        x = self.layers[-1].last(x, terms[-1], valid, branches)
        return self.final_norm(x)[:, -1]

    def _with_intermediates(self, item_ids, retrieval, query, change):
        x, valid = self.embedding(item_ids), item_ids != PAD
        branches = Branches(change.dispatch, change.local_window)
        stage1, sinks, logits1, sink_logits, logits2, interests = [], [], [], [], [], []
        for layer, terms in zip(self.layers, self._terms(retrieval, change), strict=True):
            w1, sink, vectors, a = layer.maps(x, terms, valid)
            x, scores2 = self._causal(layer, x, terms, valid, branches, want_weights=True)
            stage1.append(w1)
            sinks.append(sink)
            logits1.append(a)
            sink_logits.append(terms.sink_logit)
            logits2.append(scores2)
            interests.append(vectors)
        stage2_logits = torch.stack(logits2, 1)  # (B,L,h,N,k)
        inter = ElasticIntermediates(
            stage1_weights=torch.stack(stage1, 1),
            stage2_weights=stage2_logits.softmax(-1),  # the kernel's own softmax of them
            slot_ids=retrieval.slot_ids,
            gates=retrieval.gates,
            query=query,
            interest_vectors=torch.stack(interests, 1),
            memory_scores=retrieval.scores,
            stage1_sink=torch.stack(sinks, 1),
            stage1_logits=torch.stack(logits1, 1),
            stage1_sink_logits=torch.stack(sink_logits, 1),
            stage2_logits=stage2_logits,
        )
        return self.scores(self.final_norm(x)[:, -1]), inter

    # -------------------------------------------------------------------------- training

    def sample_context(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Training context length c per sequence: U{1 .. max(1, frac·len)}."""
        length = (input_ids != PAD).sum(1)
        hi = (length.float() * self.config.context_max_frac).floor().clamp_min(1)
        return (torch.rand(length.shape, device=input_ids.device) * hi).long() + 1

    def loss_mask(self, input_ids: torch.Tensor, context_len: torch.Tensor) -> torch.Tensor:
        """(B, N) True where a position may enter the loss: its target lies after the context.

        Real items occupy [N-len, N); the context is the first c of them, so position i (whose
        target is the item at i+1) is allowed iff i + 1 >= N - len + c.
        """
        _b, n = input_ids.shape
        length = (input_ids != PAD).sum(1)
        first = n - length + context_len - 1  # (B,)
        return torch.arange(n, device=input_ids.device)[None, :] >= first[:, None]

    def training_loss(
        self,
        input_ids: torch.Tensor,
        target_ids: torch.Tensor,
        context_len: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Cross-entropy at the positions after the query's context, plus the weighted slot
        balance term. Goes through `encode`, the path the leakage test holds causal."""
        if context_len is None:
            context_len = self.sample_context(input_ids)
        change = Intervention(query_context=context_len)
        retrieval, _ = self.retrieve(input_ids, change)
        hidden, _ = self._encode(input_ids, retrieval, change)
        targets = target_ids.masked_fill(~self.loss_mask(input_ids, context_len), PAD)
        loss = self.loss_from_hidden(hidden, targets)
        if self.config.balance_weight and self.training:
            loss = loss + self.config.balance_weight * retrieval.balance_loss
        return loss
