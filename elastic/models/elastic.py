"""ELASTIC: linear dispatcher attention over a product-key interest memory.

Read top to bottom:

1. ``HierarchicalQueryNetwork`` reads a user's history in O(N) (windowed attention + pooling,
   level by level) into one retrieval query q.
2. ``ProductKeyMemory`` retrieves the user's k interest experts (dispatchers) from K = n² slots
   with product keys: O((n + k'²)·d_q) instead of O(K·d_q). Their gates reach the loss as a
   log-prior on the stage-2 logits.
3. ``LinearDispatcherAttention``: stage 1 *compresses* the N history tokens into k interest
   vectors (k × N weights), stage 2 *dispatches* them back to every token (N × k weights).
   Both cost O(N·k·d); nothing N × N is ever formed. The causal form — position t only sees
   tokens <= t — is a prefix softmax computed with cumulative sums, chunk by chunk.
4. ``ElasticModel`` assembles them with leak-free retrieval: during training the query reads a
   random context prefix x_1..x_c and the loss only covers positions whose targets lie after c.

Each fast path has its naive reference beside it (``*_reference``); the tests hold them equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from elastic.models.common import PAD, SequentialRecommender


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
    stage1_softcap: float = 30.0  # stage-1 logits = cap·tanh(s/cap): keeps exp() in float range
    chunk_size: int = 64  # C: causal form works in chunks of C tokens (cost ∝ N·C)
    context_max_frac: float = 0.5  # training: query context c ~ U{1..max(1, frac·len)}
    balance_weight: float = 0.01  # weight of the product-key load-balancing loss (0 = off)
    stream_segment: int = 256  # inference streams the history in segments of this many tokens
    recompute: bool | None = None  # training: segments rebuilt in backward (None: max_len >= 512)
    local_window: int = 8  # w_l: tokens also attend to their w_l most recent items (0 = off)

    def __post_init__(self) -> None:
        n = math.isqrt(self.num_slots)
        if n * n != self.num_slots:
            raise ValueError(f"num_slots must be a perfect square (K = n²), got {self.num_slots}")
        if self.d_model % self.num_heads:
            raise ValueError("d_model must be divisible by num_heads")
        if self.d_model % 2:
            raise ValueError("d_model must be even: the query is split into two halves")
        if self.num_interests > self.num_slots:
            raise ValueError("num_interests (k) cannot exceed num_slots (K)")

    @property
    def candidates(self) -> int:
        """k': sub-keys kept per half."""
        kp = self.subkey_topk or self.num_interests
        return min(kp, math.isqrt(self.num_slots))


@dataclass
class ElasticIntermediates:
    """Everything the app draws, from one forward pass (no hooks)."""

    stage1_weights: torch.Tensor  # (B, L, h, k, N): dispatcher j's weights over the history
    stage2_weights: torch.Tensor  # (B, L, h, N, k): token t's weights over the k interests
    slot_ids: torch.Tensor  # (B, k): retrieved memory slots, best first
    gates: torch.Tensor  # (B, k): softmax gates of those slots
    query: torch.Tensor  # (B, d_q): the retrieval query
    interest_vectors: torch.Tensor  # (B, L, k, d): stage-1 output over the whole history
    memory_scores: torch.Tensor = field(repr=False)  # (B, k): product-key scores of the slots


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
    """Multi-head self-attention inside non-overlapping windows of w tokens: O(N·w·d)."""

    def __init__(self, d: int, heads: int, window: int, segment: int) -> None:
        super().__init__()
        self.h, self.w = heads, window
        self.segment = window * max(1, segment // window)  # inference: windows per slice
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x, mask = _left_pad_to_multiple(x, mask, self.w)
        segment = self.segment
        if torch.is_grad_enabled() or x.shape[1] <= segment:
            return self._attend(x, mask), mask
        # inference: windows are independent, so attend a few at a time (O(segment) memory)
        parts = [self._attend(x[:, s : s + segment], mask[:, s : s + segment])
                 for s in range(0, x.shape[1], segment)]
        return torch.cat(parts, 1), mask

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
        if p < 2:
            raise ValueError("query_pool must be >= 2")
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
    gates: torch.Tensor  # (B, k) = softmax(scores / τ)
    dispatchers: torch.Tensor  # (B, k, d) = V[slot_ids]
    balance_loss: torch.Tensor  # scalar, 1.0 when sub-keys are used evenly


class ProductKeyMemory(nn.Module):
    """K = n² interest experts V, addressed by two sub-key tables C₁, C₂ ∈ R^{n × d_q/2}.

    score(slot i·n + j) = q₁·C₁[i] + q₂·C₂[j]. The best k of all K slots lie among the k'² pairs
    of the per-half top-k' (k' >= k), so retrieval is exact at O((n + k'²)·d_q) cost.
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
        # Switch-style balance per half: n · Σ_i (share of top-k' picks)_i · (mean prob)_i
        picks = F.one_hot(top_i, self.n).float().mean(dim=(0, 2))  # (2, n)
        probs = s.softmax(-1).mean(0)  # (2, n)
        balance = self.n * (picks * probs).sum(-1).mean() / self.kp
        return Retrieval(
            slot_ids=slot_ids,
            scores=scores,
            gates=(scores / self.tau).softmax(-1),
            dispatchers=self.values(slot_ids),
            balance_loss=balance,
        )

    def for_slots(self, query: torch.Tensor, slot_ids: torch.Tensor) -> Retrieval:
        """The retrieval a query would get had it picked `slot_ids` (B, k): their scores for
        this query, and gates from those scores (an intervention: random or donated slots)."""
        s = self.half_scores(query)  # (B, 2, n)
        scores = s[:, 0].gather(1, slot_ids // self.n) + s[:, 1].gather(1, slot_ids % self.n)
        return Retrieval(
            slot_ids=slot_ids,
            scores=scores,
            gates=(scores / self.tau).softmax(-1),
            dispatchers=self.values(slot_ids),
            balance_loss=scores.new_zeros(()),
        )

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


def _stage1_logits(dq: torch.Tensor, kx: torch.Tensor, cap: float) -> torch.Tensor:
    """dq (B,h,k,dh), kx (B,h,N,dh) -> soft-capped logits (B,h,k,N) in (-cap, cap)."""
    s = (dq @ kx.transpose(-2, -1)) / math.sqrt(dq.shape[-1])
    return cap * torch.tanh(s / cap)


def causal_dispatch(dq, kx, vx, q2, log_gates, valid, cap: float, chunk: int, state=None):
    """Causal linear dispatcher attention in O(N·k·dh + N·C·(dh + k)) time and memory.

    Position t: interest_j(t) = num_j(t) / den_j(t), with num_j(t) = Σ_{s<=t} e_js v_s and
    den_j(t) = Σ_{s<=t} e_js (stage 1, a prefix softmax); then
    out_t = Σ_j softmax_j(q_t·interest_j(t)/√dh + log g_j) · interest_j(t) (stage 2).

    The (N, k, dh) prefix states are never formed. Chunkwise-parallel, as in chunked linear
    attention: within a chunk of C tokens the terms q_t·num_j(t) and Σ_j u_tj num_j(t) are
    (C × C) lower-triangular matmuls shared by all k dispatchers; across chunks a carry
    (k, dh) per chunk holds the sums of all earlier chunks. No Python loop over N.

    Stability: logits are soft-capped to (-cap, cap), so e = exp(a - cap) lies in
    (e^{-2cap}, 1]: no overflow, and for cap = 30 no underflow in float32.
    `state` = (num (B,h,k,dh), den (B,h,k)) summarises the tokens before this segment, so a
    long history can be streamed segment by segment (inference in O(segment) memory).
    Returns out (B,h,N,dh), stage-2 weights w2 (B,h,N,k), and the state after the segment.
    """
    dtype = vx.dtype
    work = torch.promote_types(dtype, torch.float32)  # never scan in half precision
    dq, kx, vx, q2 = (t.to(work) for t in (dq, kx, vx, q2))
    n = kx.shape[2]
    chunk = min(chunk, n)
    a = _stage1_logits(dq, kx, cap).transpose(-2, -1)  # (B,h,N,k)
    e = torch.exp(a - cap) * valid[:, None, :, None]  # (B,h,N,k), 0 at pads
    den = torch.cumsum(e, dim=2)  # (B,h,N,k): stage-1 softmax denominators
    if state is not None:
        den = den + state[1].to(work)[:, :, None, :]
    pad = (-n) % chunk  # left-pad N to a multiple of C (pads have e = 0: no effect)
    # contiguous either way, so the chunk views below reach bmm without a copy per product
    e_c, v_c, q_c, den_c = (
        F.pad(t, (0, 0, pad, 0)) if pad else t.contiguous() for t in (e, vx, q2, den)
    )
    b, h, np_, k = e_c.shape
    nc = np_ // chunk
    e_c, den_c = e_c.view(b, h, nc, chunk, k), den_c.view(b, h, nc, chunk, k)
    v_c, q_c = v_c.view(b, h, nc, chunk, -1), q_c.view(b, h, nc, chunk, -1)  # (B,h,nc,C,dh)
    chunk_kv = e_c.transpose(-2, -1) @ v_c  # (B,h,nc,k,dh): Σ_{s in chunk} e_js v_s
    carry = torch.cumsum(chunk_kv, dim=2)
    num_after = carry[:, :, -1]  # (B,h,k,dh): Σ over the whole segment
    carry = torch.cat([torch.zeros_like(carry[:, :, :1]), carry[:, :, :-1]], dim=2)  # exclusive
    if state is not None:
        carry = carry + state[0].to(work)[:, :, None]
        num_after = num_after + state[0].to(work)
    tril = torch.ones(chunk, chunk, dtype=torch.bool, device=e.device).tril()  # [t, s]: s <= t
    qv = (q_c @ v_c.transpose(-2, -1)).masked_fill_(~tril, 0.0)  # (B,h,nc,C,C): q_t·v_s
    qnum = qv @ e_c + q_c @ carry.transpose(-2, -1)  # (B,h,nc,C,k): q_t·num_j(t)
    seen = den_c > 0  # False only before the first real token
    safe = torch.where(seen, den_c, 1.0)
    logits = qnum / safe / math.sqrt(vx.shape[-1]) + log_gates.to(work)[:, None, None, None, :]
    w2 = logits.softmax(-1)  # (B,h,nc,C,k)
    u = torch.where(seen, w2 / safe, 0.0)  # out_t = Σ_j u_tj num_j(t)
    ue = (u @ e_c.transpose(-2, -1)).masked_fill_(~tril, 0.0)  # (B,h,nc,C,C): Σ_j u_tj e_js
    out = (ue @ v_c).add_(u @ carry)  # (B,h,nc,C,dh); in place: bmm's backward needs no output
    out = out.reshape(b, h, np_, -1)[:, :, pad:]
    return out.to(dtype), w2.reshape(b, h, np_, k)[:, :, pad:], (num_after, den[:, :, -1])


def causal_dispatch_reference(dq, kx, vx, q2, log_gates, valid, cap: float):
    """Naive O(N²·k) reference: an explicit (k, N, N) mask and softmax per position."""
    a = _stage1_logits(dq, kx, cap)  # (B,h,k,N)
    n = a.shape[-1]
    allowed = torch.ones(n, n, dtype=torch.bool, device=a.device).tril()  # [t, s]: s <= t
    allowed = allowed & valid[:, None, None, None, :]  # (B,1,1,N,N)
    logits = a.unsqueeze(-2).expand(*a.shape[:3], n, n).masked_fill(~allowed, float("-inf"))
    w1 = torch.nan_to_num(logits.softmax(-1))  # (B,h,k,N_t,N_s); rows with nothing visible → 0
    interests = w1 @ vx.unsqueeze(2)  # (B,h,k,N,dh)
    scale = 1.0 / math.sqrt(vx.shape[-1])
    lg = log_gates[:, None, None, :]
    w2 = (torch.einsum("bhtd,bhktd->bhtk", q2, interests) * scale + lg).softmax(-1)
    return torch.einsum("bhtk,bhktd->bhtd", w2, interests), w2


def full_dispatch(dq, kx, vx, q2, log_gates, valid, cap: float):
    """Full (bidirectional) form: every token sees the whole history. O(N·k·dh).

    Returns out (B,h,N',dh) for the N' queries in q2, stage-1 weights (B,h,k,N), stage-2
    weights (B,h,N',k), and the interest vectors (B,h,k,dh).
    """
    a = _stage1_logits(dq, kx, cap)
    a = a.masked_fill(~valid[:, None, None, :], float("-inf"))
    w1 = torch.nan_to_num(a.softmax(-1))  # (B,h,k,N)
    interests = w1 @ vx  # (B,h,k,dh)
    scale = 1.0 / math.sqrt(vx.shape[-1])
    w2 = ((q2 @ interests.transpose(-2, -1)) * scale + log_gates[:, None, None, :]).softmax(-1)
    return w2 @ interests, w1, w2, interests


def full_dispatch_reference(dq, kx, vx, q2, log_gates, valid, cap: float):
    """Naive reference of the full form, one dispatcher and one token at a time."""
    b, h, k, dh = dq.shape
    out = torch.zeros_like(q2)
    scale = 1.0 / math.sqrt(dh)
    for bi in range(b):
        idx = valid[bi].nonzero().flatten()
        for hi in range(h):
            interests = []
            for j in range(k):
                s = (kx[bi, hi, idx] @ dq[bi, hi, j]) * scale
                w = torch.softmax(cap * torch.tanh(s / cap), 0)
                interests.append(w @ vx[bi, hi, idx])
            interests = torch.stack(interests)  # (k, dh)
            for t in range(q2.shape[2]):
                w2 = torch.softmax(interests @ q2[bi, hi, t] * scale + log_gates[bi], 0)
                out[bi, hi, t] = w2 @ interests
    return out


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


def local_attention_reference(q, k, v, valid, window: int):
    """Naive reference: an explicit (N × N) banded causal mask."""
    n = k.shape[2]
    t = torch.arange(n)[:, None]
    s = torch.arange(n)[None, :]
    allowed = (s <= t) & (s > t - window) & valid[:, None, None, :]  # (B,1,N,N)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])
    w = torch.nan_to_num(scores.masked_fill(~allowed, float("-inf")).softmax(-1))
    return (w @ v) * valid[:, None, :, None]


@dataclass
class LayerOutput:
    hidden: torch.Tensor  # (B, N', d)
    stage1: torch.Tensor | None = None  # (B, h, k, N)
    stage2: torch.Tensor | None = None  # (B, h, N, k)
    interests: torch.Tensor | None = None  # (B, k, d)


class LinearDispatcherAttention(nn.Module):
    """Pre-LN layer: x + dispatch(LN(x)), then x + FFN(LN(x)). Per head, the dispatchers give the
    stage-1 queries; tokens give keys and values; tokens query the interest vectors in stage 2,
    whose log-gates are a prior over the k interests (how retrieval reaches the loss)."""

    def __init__(self, config: ElasticConfig) -> None:
        super().__init__()
        d = config.d_model
        self.h, self.cap, self.chunk = config.num_heads, config.stage1_softcap, config.chunk_size
        self.local_window = config.local_window
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

    def forward(
        self,
        x: torch.Tensor,
        dispatchers: torch.Tensor,
        log_gates: torch.Tensor,
        valid: torch.Tensor,
        form: str = "causal",
        want_weights: bool = False,
        dispatch: bool = True,
        window: bool = True,
    ) -> LayerOutput:
        """x (B,N,d), dispatchers (B,k,d), log_gates (B,k), valid (B,N).

        form: "causal" (position t sees <= t), "full" (every token sees all), or "last"
        (only the last position's output, which is the same in both forms). `dispatch` and
        `window` switch a branch off (interventions).
        """
        b, _n, d = x.shape
        kx, vx, q2 = (self._heads(t) for t in self.token_kvq(self.norm1(x)).split(d, -1))
        dq = self._heads(self.dispatcher_q(dispatchers))  # (B,h,k,dh)
        out = LayerOutput(hidden=x)
        if form == "causal":
            y, w2, _ = causal_dispatch(dq, kx, vx, q2, log_gates, valid, self.cap, self.chunk)
            if want_weights:
                _, out.stage1, _, interests = full_dispatch(
                    dq, kx, vx, q2[:, :, -1:], log_gates, valid, self.cap
                )
                out.stage2 = w2
        else:
            queries = q2 if form == "full" else q2[:, :, -1:]
            y, out.stage1, out.stage2, interests = full_dispatch(
                dq, kx, vx, queries, log_gates, valid, self.cap
            )
            x = x if form == "full" else x[:, -1:]
        if not dispatch:
            y = torch.zeros_like(y)
        if self.local_window and window:
            if form == "last":  # the last query reads the last w tokens
                w = slice(-self.local_window, None)
                scores = (q2[:, :, -1:] @ kx[:, :, w].transpose(-2, -1)) / math.sqrt(kx.shape[-1])
                scores = scores.masked_fill(~valid[:, None, None, w], torch.finfo(y.dtype).min)
                y = y + scores.softmax(-1) @ vx[:, :, w]  # (B,h,1,dh)
            else:
                y = y + local_attention(q2, kx, vx, valid, self.local_window)
        if want_weights:
            out.interests = interests.transpose(1, 2).reshape(b, -1, d)  # (B,k,d)
        y = self.proj(y.transpose(1, 2).reshape(b, y.shape[2], d))  # (B, N', d)
        x = x + self.dropout(y)
        out.hidden = x + self.ffn(self.norm2(x))
        return out


    def stream(self, x, dispatchers, log_gates, valid, segment: int, recompute: bool = False):
        """The causal form, `segment` tokens at a time: the stage-1 state (num, den) and the
        last w keys/values of the local window carry across segments, so activations exist for
        one segment at a time. Inference: O(B·segment·d) memory whatever N is. Training with
        `recompute`: each segment keeps only its inputs and rebuilds its activations in
        backward (gradients flow through the carried state). Equals `forward(form="causal")`.
        """
        b, _n, d = x.shape
        dq = self._heads(self.dispatcher_q(dispatchers))
        dh = d // self.h
        state = (x.new_zeros(b, self.h, dq.shape[2], dh), x.new_zeros(b, self.h, dq.shape[2]))
        tail = (x.new_zeros(b, self.h, 0, dh), x.new_zeros(b, self.h, 0, dh),
                valid.new_zeros(b, 0))  # (k, v, valid) of the last w tokens seen
        outs = []
        # split, not x[:, s0:s0+S]: a slice's backward fills a zero tensor of x's full size,
        # once per segment, which made training O(N²/S) in time
        for xs, vs in zip(x.split(segment, 1), valid.split(segment, 1), strict=True):
            args = (xs, vs, dq, log_gates, *state, *tail)
            if recompute:
                out, *carry = checkpoint(self._segment, *args, use_reentrant=False)
            else:
                out, *carry = self._segment(*args)
            state, tail = tuple(carry[:2]), tuple(carry[2:])
            outs.append(out)
        return torch.cat(outs, 1)

    def _segment(self, xs, vs, dq, log_gates, num, den, tail_k, tail_v, tail_valid):
        b, _, d = xs.shape
        kx, vx, q2 = (self._heads(t) for t in self.token_kvq(self.norm1(xs)).split(d, -1))
        y, _, (num, den) = causal_dispatch(dq, kx, vx, q2, log_gates, vs, self.cap, self.chunk,
                                           (num, den))
        if self.local_window:
            kk, vv = torch.cat([tail_k, kx], 2), torch.cat([tail_v, vx], 2)
            mm = torch.cat([tail_valid, vs], 1)
            qq = F.pad(q2, (0, 0, kk.shape[2] - q2.shape[2], 0))  # no queries for the tail
            y = y + local_attention(qq, kk, vv, mm, self.local_window)[:, :, -q2.shape[2] :]
            w = self.local_window
            tail_k, tail_v, tail_valid = kk[:, :, -w:], vv[:, :, -w:], mm[:, -w:]
        y = self.proj(y.transpose(1, 2).reshape(b, -1, d))
        xs = xs + self.dropout(y)
        return xs + self.ffn(self.norm2(xs)), num, den, tail_k, tail_v, tail_valid


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
        auto = self.config.max_len >= 512  # long histories are memory-bound, short ones are not
        return auto if self.config.recompute is None else self.config.recompute

    def retrieve(self, item_ids: torch.Tensor) -> tuple[Retrieval, torch.Tensor]:
        """Query from the whole history -> (retrieval, query)."""
        if self.recompute and torch.is_grad_enabled():  # rebuilt in backward, like the layers
            query = checkpoint(self._query, item_ids, use_reentrant=False)
        else:
            query = self._query(item_ids)
        return self.memory(query), query

    def _query(self, item_ids: torch.Tensor) -> torch.Tensor:
        return self.query_net(self.embedding(item_ids), item_ids != PAD)  # (B, d_q)

    def _run_layers(self, x, retrieval, valid, last_form: str, want_weights: bool,
                    intervention: Intervention | None = None):
        outputs = []
        log_gates = retrieval.gates.clamp_min(1e-9).log()
        recompute = self.recompute and torch.is_grad_enabled() and not want_weights
        change = intervention or Intervention()
        if change.knockout:
            log_gates = log_gates.clone()
            log_gates[:, list(change.knockout)] = float("-inf")
        for i, layer in enumerate(self.layers):
            form = last_form if i == len(self.layers) - 1 else "causal"
            if recompute and form == "causal" and intervention is None:
                x = layer.stream(x, retrieval.dispatchers, log_gates, valid,
                                 self.config.stream_segment, recompute=True)
                continue
            o = layer(x, retrieval.dispatchers, log_gates, valid, form, want_weights,
                      dispatch=change.dispatch, window=change.local_window)
            x = o.hidden
            outputs.append(o)
        return self.final_norm(x), outputs

    def _stream_layers(self, x, retrieval, valid) -> torch.Tensor:
        """Inference: layers 1..L-1 streamed segment by segment, the last one for the last
        position only (its stage 1 is one pass over the history)."""
        log_gates = retrieval.gates.clamp_min(1e-9).log()
        for layer in self.layers[:-1]:
            x = layer.stream(x, retrieval.dispatchers, log_gates, valid, self.config.stream_segment)
        x = self.layers[-1](x, retrieval.dispatchers, log_gates, valid, "last").hidden
        return self.final_norm(x)

    def encode(self, item_ids: torch.Tensor, context_len: torch.Tensor | None = None):
        """Causal hidden states (B, N, d). The query reads the first `context_len` real items
        (default: the whole history)."""
        query_ids = item_ids if context_len is None else take_prefix(item_ids, context_len)
        retrieval, _ = self.retrieve(query_ids)
        hidden, _ = self._run_layers(
            self.embedding(item_ids), retrieval, item_ids != PAD, "causal", False
        )
        return hidden

    def _retrieve_under(self, item_ids: torch.Tensor, change: Intervention):
        """Retrieval for `item_ids` under an intervention -> (retrieval, query)."""
        query_ids = item_ids if change.donor_ids is None else change.donor_ids
        if change.query_context is not None:
            query_ids = take_prefix(query_ids, change.query_context)
        if change.slot_ids is None:
            return self.retrieve(query_ids)
        query = self._query(query_ids)
        return self.memory.for_slots(query, change.slot_ids), query

    def forward(
        self,
        item_ids: torch.Tensor,
        return_intermediates: bool = False,
        intervention: Intervention | None = None,
    ):
        """Next-item logits (B, |I|+1) at the last position (and the intermediates).

        `intervention` changes the pass (knock out dispatchers, another user's experts, forced
        slots, a branch off): what the app's experiments and `elastic.ablation` use."""
        if intervention is not None:
            retrieval, query = self._retrieve_under(item_ids, intervention)
        else:
            retrieval, query = self.retrieve(item_ids)
        x = self.embedding(item_ids)
        valid = item_ids != PAD
        if not return_intermediates and intervention is not None:
            hidden, _ = self._run_layers(x, retrieval, valid, "last", False, intervention)
            return self.scores(hidden[:, -1])
        if not return_intermediates:
            if torch.is_grad_enabled() or self.training:
                hidden, _ = self._run_layers(x, retrieval, valid, "last", False)
            else:
                hidden = self._stream_layers(x, retrieval, valid)
            return self.scores(hidden[:, -1])
        hidden, outs = self._run_layers(x, retrieval, valid, "causal", True, intervention)
        inter = ElasticIntermediates(
            stage1_weights=torch.stack([o.stage1 for o in outs], 1),
            stage2_weights=torch.stack([o.stage2 for o in outs], 1),
            slot_ids=retrieval.slot_ids,
            gates=retrieval.gates,
            query=query,
            interest_vectors=torch.stack([o.interests for o in outs], 1),
            memory_scores=retrieval.scores,
        )
        return self.scores(hidden[:, -1]), inter

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
        if context_len is None:
            context_len = self.sample_context(input_ids)
        query_ids = take_prefix(input_ids, context_len)
        retrieval, _ = self.retrieve(query_ids)
        hidden, _ = self._run_layers(
            self.embedding(input_ids), retrieval, input_ids != PAD, "causal", False
        )
        targets = target_ids.masked_fill(~self.loss_mask(input_ids, context_len), PAD)
        loss = self.loss_from_hidden(hidden, targets)
        if self.config.balance_weight and self.training:
            loss = loss + self.config.balance_weight * retrieval.balance_loss
        return loss
