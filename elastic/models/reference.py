"""Naive references for the fast kernels of `elastic.models.elastic` and `.common`.

Each builds what the fast kernel avoids (an explicit N × N mask, a loop over tokens) and is
obviously right; the tests hold the kernels equal to them, forward and backward, in float64
and in float32 against float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from elastic.models.common import LOGITS_PER_CHUNK, PAD
from elastic.models.elastic import softcap


def causal_dispatch_reference(dq, kx, vx, q2, log_gates, valid, cap: float, sink=None):
    """Naive O(N²·k) causal dispatch: an explicit (k, N, N) mask and a softmax per position.

    `sink` = (logit (B,h,k), value (B,h,k,dh)): a token every dispatcher sees before the
    history (its own memory prior). Without it a dispatcher with nothing visible gives 0.
    """
    a = softcap(dq @ kx.transpose(-2, -1) / math.sqrt(dq.shape[-1]), cap)  # (B,h,k,N)
    n = a.shape[-1]
    allowed = torch.ones(n, n, dtype=torch.bool, device=a.device).tril()  # [t, s]: s <= t
    allowed = allowed & valid[:, None, None, None, :]  # (B,1,1,N,N)
    logits = a.unsqueeze(-2).expand(*a.shape[:3], n, n).masked_fill(~allowed, float("-inf"))
    values = vx.unsqueeze(2).expand(-1, -1, a.shape[2], -1, -1)  # (B,h,k,N,dh)
    if sink is not None:
        sink_logit, sink_value = sink
        first = sink_logit[..., None, None].expand(*a.shape[:3], n, 1)
        logits = torch.cat([first, logits], -1)  # (B,h,k,N_t,1+N_s)
        values = torch.cat([sink_value.unsqueeze(-2), values], -2)  # (B,h,k,1+N,dh)
    w1 = torch.nan_to_num(logits.softmax(-1))  # rows with nothing visible → 0
    interests = w1 @ values  # (B,h,k,N,dh)
    scale = 1.0 / math.sqrt(vx.shape[-1])
    lg = log_gates[:, None, None, :]
    w2 = (torch.einsum("bhtd,bhktd->bhtk", q2, interests) * scale + lg).softmax(-1)
    return torch.einsum("bhtk,bhktd->bhtd", w2, interests), w2


def full_dispatch_reference(dq, kx, vx, q2, log_gates, valid, cap: float, sink=None):
    """Naive full (bidirectional) dispatch, one dispatcher and one token at a time."""
    b, h, k, dh = dq.shape
    out = torch.zeros_like(q2)
    scale = 1.0 / math.sqrt(dh)
    for bi in range(b):
        idx = valid[bi].nonzero().flatten()
        for hi in range(h):
            interests = []
            for j in range(k):
                logits = softcap((kx[bi, hi, idx] @ dq[bi, hi, j]) * scale, cap)
                values = vx[bi, hi, idx]
                if sink is not None:
                    logits = torch.cat([sink[0][bi, hi, j].view(1), logits])
                    values = torch.cat([sink[1][bi, hi, j].view(1, dh), values])
                interests.append(torch.softmax(logits, 0) @ values)
            interests = torch.stack(interests)  # (k, dh)
            for t in range(q2.shape[2]):
                w2 = torch.softmax(interests @ q2[bi, hi, t] * scale + log_gates[bi], 0)
                out[bi, hi, t] = w2 @ interests
    return out


def local_attention_reference(q, k, v, valid, window: int):
    """Naive sliding-window attention: an explicit (N × N) banded causal mask."""
    n = k.shape[2]
    t = torch.arange(n)[:, None]
    s = torch.arange(n)[None, :]
    allowed = (s <= t) & (s > t - window) & valid[:, None, None, :]  # (B,1,N,N)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])
    w = torch.nan_to_num(scores.masked_fill(~allowed, float("-inf")).softmax(-1))
    return (w @ v) * valid[:, None, :, None]


def _chunk_cross_entropy_sum(hidden, item_weight, targets):
    logits = hidden @ item_weight.T  # (rows, |I|+1)
    logits[:, PAD] = float("-inf")
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 -> float32
    return F.cross_entropy(logits, targets, reduction="sum")


def full_softmax_loss_reference(hidden, item_weight, targets, chunk_rows: int = 2048):
    """`full_softmax_loss` as it was before `_LinearCrossEntropy`: F.cross_entropy on the logits
    with the padding column at -inf, a chunk of rows at a time under `checkpoint` (float64 stays
    float64 here, for the tests).

    Obviously right, but per chunk it keeps the log-softmax, fills a zeros tensor of the
    logits' size in NLL's backward, copies one in the padding column's index_put backward, and
    runs the whole chunk again in backward. Kept as the baseline of benchmarks/loss_kernel.py.
    """
    chunk_rows = max(1, min(chunk_rows, LOGITS_PER_CHUNK // item_weight.shape[0]))
    keep = targets != PAD
    hidden, targets = hidden[keep], targets[keep]
    total = hidden.new_zeros((), dtype=torch.promote_types(hidden.dtype, torch.float32))
    grad = torch.is_grad_enabled() and (hidden.requires_grad or item_weight.requires_grad)
    for h, t in zip(hidden.split(chunk_rows), targets.split(chunk_rows), strict=True):
        if grad:
            total = total + checkpoint(_chunk_cross_entropy_sum, h, item_weight, t,
                                       use_reentrant=False)
        else:
            total = total + _chunk_cross_entropy_sum(h, item_weight, t)
    return total / keep.sum().clamp_min(1)
