"""How much SASRec (materialized, SDPA) and ELASTIC cost: analytic FLOPs and activation memory,
measured time and peak memory, and a guard that refuses points that would not fit.

Notation (DESIGN.md): B batch, N history length, d width, h heads, L layers, k interests,
K memory slots, |I| items, w query window, p query pooling, C causal chunk, m = ffn_mult.

FLOPs are counted the way `torch.utils.flop_counter.FlopCounterMode` counts them: only matrix
products, 2·M·N·K each (linear layers, bmm/einsum, fused attention); elementwise work,
softmax, LayerNorm, gathers and matrix-vector products count zero. Training = forward +
backward: every product's backward is two products of the same size (grad of each operand),
so it counts 3× its forward; the fused loss computes its logits again in backward (4×), and
fused attention's backward recomputes its scores (5 products to the forward's 2: 3.5×).
`tests/test_complexity.py` holds these formulas equal to `FlopCounterMode`'s count.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch.utils import flop_counter

from elastic.device import pick_device
from elastic.models import ElasticConfig, build_model
from elastic.models.elastic import RECOMPUTE_FROM

# "none" is the floor: the same embedding, feed-forward layers and loss without any attention
FORMS = ("elastic", "sasrec-materialized", "sasrec-sdpa", "none")
MODES = ("infer", "train")
FLOAT = 4  # bytes per float32 activation
MiB, GiB = 2**20, 2**30

# FlopCounterMode knows the CUDA attention kernels but not the CPU one that
# scaled_dot_product_attention dispatches to on CPU; it has the same signature, so torch's own
# formula applies. Without this, SDPA's attention would count zero FLOPs on CPU.
_CPU_SDPA = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: flop_counter.sdpa_flop,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: (
        flop_counter.sdpa_backward_flop
    ),
}
for _op, _formula in _CPU_SDPA.items():
    if _op not in flop_counter.flop_registry:
        flop_counter.register_flop_formula(_op, get_raw=True)(_formula)  # already wrapped


# Shape field -> config field: shared by both models, then ELASTIC's own
_SHARED_FIELDS = {
    "seq_len": "max_len",
    "d_model": "d_model",
    "heads": "num_heads",
    "layers": "num_layers",
    "items": "num_items",
    "ffn_mult": "ffn_mult",
}
_ELASTIC_FIELDS = {
    "interests": "num_interests",
    "slots": "num_slots",
    "window": "query_window",
    "pool": "query_pool",
    "chunk": "chunk_size",
    "local_window": "local_window",
    "segment": "stream_segment",
    "recompute": "recompute",
    "context_max_frac": "context_max_frac",
}
_DEFAULT = ElasticConfig()  # Shape's defaults are the model's defaults


@dataclass(frozen=True)
class Shape:
    """One point of the design space: the model's size and the batch it runs on."""

    batch: int  # B
    seq_len: int  # N (= max_len)
    d_model: int = _DEFAULT.d_model  # d
    heads: int = _DEFAULT.num_heads  # h
    layers: int = _DEFAULT.num_layers  # L
    interests: int = _DEFAULT.num_interests  # k
    slots: int = _DEFAULT.num_slots  # K
    items: int = _DEFAULT.num_items  # |I|
    window: int = _DEFAULT.query_window  # w: query network window
    pool: int = _DEFAULT.query_pool  # p
    chunk: int = _DEFAULT.chunk_size  # C
    local_window: int = _DEFAULT.local_window  # w_l: ELASTIC's sliding-window branch (0 = off)
    segment: int = _DEFAULT.stream_segment  # S: ELASTIC streams the history S tokens at a time
    recompute: bool | None = _DEFAULT.recompute  # ELASTIC training: segments rebuilt in backward
    ffn_mult: int = _DEFAULT.ffn_mult  # m
    context_max_frac: float = _DEFAULT.context_max_frac  # ELASTIC training: c ~ U{1..frac·N}
    padded: bool = False  # left-padded batch: SDPA needs a (B,1,N,N) mask (memory only)

    @classmethod
    def from_config(cls, config, batch: int) -> Shape:
        """From an ElasticConfig or SASRecConfig (fields a SASRec config lacks keep defaults)."""
        fields = _SHARED_FIELDS | _ELASTIC_FIELDS
        own = {
            ours: getattr(config, theirs)
            for ours, theirs in fields.items()
            if hasattr(config, theirs)
        }
        return cls(batch=batch, **own)

    def model_settings(self, form: str) -> tuple[str, dict]:
        """(name, settings) for `build_model`: dropout 0, max_len N."""
        _check_form(form)
        settings = {theirs: getattr(self, ours) for ours, theirs in _SHARED_FIELDS.items()}
        settings["dropout"] = 0.0
        if form == "elastic":
            own = {theirs: getattr(self, ours) for ours, theirs in _ELASTIC_FIELDS.items()}
            return "elastic", settings | own
        return "sasrec", settings | {"attention": form.removeprefix("sasrec-")}  # or "none"

    @property
    def recomputes(self) -> bool:
        """Whether ELASTIC training rebuilds activations in backward (ElasticModel.recompute:
        by default for N >= RECOMPUTE_FROM, where training is memory-bound)."""
        return self.seq_len >= RECOMPUTE_FROM if self.recompute is None else self.recompute


def _check_form(form: str) -> None:
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; choose one of {', '.join(FORMS)}")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")


# ----------------------------------------------------------------------------------------------
# FLOPs
# ----------------------------------------------------------------------------------------------


def _linear(rows: int, d_in: int, d_out: int) -> int:
    return 2 * rows * d_in * d_out


def query_window_lengths(s: Shape) -> list[int]:
    """Lengths the query network's window attentions run on (each padded to a multiple of w).

    It left-pads to N, then per level: window attention, pool by p; the last window is read by
    one attention-pooling token. Σ lengths ≈ N·p/(p-1): the query network is O(N).
    """
    levels, n = 0, s.seq_len
    while n > s.window:
        n, levels = math.ceil(n / s.pool), levels + 1
    lengths, n = [], s.seq_len
    for _ in range(levels):
        n = math.ceil(n / s.window) * s.window
        lengths.append(n)
        n = math.ceil(n / s.pool)  # pooling pads to a multiple of p, then shortens by p
    lengths.append(math.ceil(n / s.window) * s.window)
    return lengths


def query_network_flops(s: Shape) -> int:
    """Per level of n tokens: qkv + proj 8·B·n·d², scores and weights·values 4·B·n·w·d.
    The read token: keys/values 4·B·n·d², output 2·B·d² (its scores are a matrix-vector
    product, which FlopCounterMode does not count)."""
    b, d, w = s.batch, s.d_model, s.window
    lengths = query_window_lengths(s)
    levels = sum(8 * b * n * d * d + 4 * b * n * w * d for n in lengths)
    return levels + _linear(b * lengths[-1], d, 2 * d) + _linear(b, d, d)


def memory_flops(s: Shape) -> int:
    """Product-key scores: two halves of d/2 against n = √K sub-keys each, 2·B·√K·d.
    Top-k, gathers and the k'² pair sums are not matrix products."""
    return 2 * s.batch * math.isqrt(s.slots) * s.d_model


def _ffn_and_projections(s: Shape, rows: int) -> int:
    """Attention output projection 2·R·d² and feed-forward 4·m·R·d² on R rows."""
    d = s.d_model
    return _linear(rows, d, d) + 2 * _linear(rows, d, s.ffn_mult * d)


# The terms of the formulas, as the lab's hover names them (`flops_terms`)
QKV = "queries, keys, values"
ATTENTION_CORE = "Q·Kᵀ and weights·V (∝ N²)"
PROJECTION_FFN = "output projection + FFN"
DISPATCHER_TERMS = "dispatchers' queries, keys, values"
STAGE1_LOGITS = "stage-1 logits (∝ N·k)"
CAUSAL_SCAN = "causal scan: chunk sums and carries (∝ N·k)"
CHUNK_PRODUCTS = "causal scan: products inside chunks (∝ N·C)"
LOCAL_WINDOW = "local window (∝ N·w_l)"
LAST_POSITION = "last position: interests and stage 2 (∝ N·k)"
RECOMPUTED = "forward recomputed in backward"


def sasrec_layer_terms(s: Shape) -> dict[str, int]:
    """One SASRec layer, term by term: scores Q·Kᵀ 2·B·N²·d and weights·V 2·B·N²·d; qkv
    6·B·N·d², then projection and FFN. SDPA counts the same as the materialized form:
    FlopCounterMode charges fused attention for the full N×N square, causal or not."""
    b, n, d = s.batch, s.seq_len, s.d_model
    return {
        QKV: _linear(b * n, d, 3 * d),
        ATTENTION_CORE: 4 * b * n * n * d,
        PROJECTION_FFN: _ffn_and_projections(s, b * n),
    }


def sasrec_layer_flops(s: Shape) -> tuple[int, int]:
    """(attention core, the rest) of one SASRec layer (see `sasrec_layer_terms`)."""
    terms = sasrec_layer_terms(s)
    return terms[ATTENTION_CORE], terms[QKV] + terms[PROJECTION_FFN]


def _segments(s: Shape, streamed: bool) -> list[tuple[int, int]]:
    """(tokens, local-window tail) of each pass a causal layer makes over the history: one
    pass over N, or segments of S tokens that also read the w_l tokens before them."""
    if not streamed:
        return [(s.seq_len, 0)]
    passes, tail = [], 0
    for start in range(0, s.seq_len, s.segment):
        n = min(s.segment, s.seq_len - start)
        passes.append((n, tail))
        tail = min(s.local_window, tail + n)
    return passes


def elastic_layer_flops(s: Shape, form: str = "causal", streamed: bool = False) -> int:
    """One linear dispatcher attention layer.

    All forms: token keys/values/queries 6·B·N·d², dispatcher queries 2·B·k·d² and the
    dispatchers seen as tokens (their sink key and value) 6·B·k·d², stage-1 logits 2·B·k·N·d.
    causal, per pass of n tokens (chunks of C' = min(C, n), n' = n padded to a multiple of C'):
      chunk sums eᵀv, q·carryᵀ, u·carry     3 × 2·n'·k·dh per head -> 6·B·n'·k·d
      q·vᵀ, ue·v (C'×C' per chunk)          2 × 2·n'·C'·dh         -> 4·B·n'·C'·d
      qv·e, u·eᵀ (C'×C' by C'×k)            2 × 2·n'·C'·k          -> 4·B·h·n'·C'·k
      local window: blocks of w_l queries on 2·w_l keys, 8·B·n_w·w_l·d on the n + tail tokens
      (n_w = that padded to a multiple of w_l); then projection and FFN on every row.
      `streamed`: passes of S tokens (what `ElasticModel` does), else one pass of N.
    last (only position N-1, for inference): interests w1·v 2·B·k·N·d, stage 2 4·B·k·d, the
      last query on its w_l keys 4·B·w_l·d, then projection and FFN on one row per sequence.
    """
    return sum(elastic_layer_terms(s, form, streamed).values())


def elastic_layer_terms(s: Shape, form: str = "causal", streamed: bool = False) -> dict[str, int]:
    """`elastic_layer_flops`, term by term (the terms sum to it)."""
    b, n, d, k, h = s.batch, s.seq_len, s.d_model, s.interests, s.heads
    terms = {
        QKV: _linear(b * n, d, 3 * d),
        DISPATCHER_TERMS: _linear(b * k, d, 4 * d),
        STAGE1_LOGITS: 2 * b * k * n * d,
    }
    if form == "last":
        terms[LAST_POSITION] = 2 * b * k * n * d + 4 * b * k * d
        terms[LOCAL_WINDOW] = 4 * b * min(s.local_window, n) * d
        terms[PROJECTION_FFN] = _ffn_and_projections(s, b)
        return terms
    scan = products = local = 0
    for tokens, tail in _segments(s, streamed):
        c = min(s.chunk, tokens)
        n_pad = math.ceil(tokens / c) * c
        scan += 6 * b * n_pad * k * d
        products += 4 * b * n_pad * c * d + 4 * b * h * n_pad * c * k
        if s.local_window:
            keys = tokens + tail
            w = min(s.local_window, keys)
            local += 8 * b * math.ceil(keys / w) * w * w * d
    terms |= {CAUSAL_SCAN: scan, CHUNK_PRODUCTS: products, LOCAL_WINDOW: local}
    terms[PROJECTION_FFN] = _ffn_and_projections(s, b * n)
    return terms


def loss_rows(form: str, s: Shape, context_len: float | None = None) -> float:
    """Rows of the training loss. SASRec: every position, B·N (histories without padding).
    ELASTIC: positions after the query context c, B·(N − c + 1); by default E[c] = (⌊frac·N⌋+1)/2
    for c ~ U{1..⌊frac·N⌋}."""
    n = s.seq_len
    if form != "elastic":
        return s.batch * n
    if context_len is None:
        context_len = (max(1, math.floor(s.context_max_frac * n)) + 1) / 2
    return s.batch * (n - context_len + 1)


def _flop_items(
    form: str, mode: str, s: Shape, context_len: float | None = None
) -> list[tuple[str, str, float]]:
    """(part, term, FLOPs) of one call, backward included for mode "train": grouped by part
    they are `flops_breakdown`, by term `flops_terms`; either way they sum to `flops`.

    infer: `model(ids)` — logits at the last position only (head 2·B·d·(|I|+1)); ELASTIC's last
    layer is the 'last' form. train: `model.training_loss(ids, ids)` — all layers causal, the
    fused loss 2·R·d·|I| forward (the padding column is never formed), 4× that in all.
    """
    _check_form(form)
    _check_mode(mode)
    train = mode == "train"
    grad = 3 if train else 1  # forward + two backward products
    items: list[tuple[str, str, float]] = []
    if form == "elastic":
        # Layers run segment by segment (streamed); inference runs the last one as 'last'.
        # Recomputing training runs each segment's forward again in backward (4× = 3× + the
        # recomputed forward), except what lies outside the checkpoint (the dispatchers'
        # queries, keys and values) or after the last tensor backward needs (the FFN's output
        # product: non-reentrant checkpoint stops early).
        recompute = train and s.recomputes
        once = _linear(s.batch * s.interests, s.d_model, 4 * s.d_model) + _linear(
            s.batch * s.seq_len, s.ffn_mult * s.d_model, s.d_model
        )
        query = query_network_flops(s)
        items.append(("query network", "query network", grad * query))
        if recompute:
            items.append(("query network", RECOMPUTED, query))
        items.append(("product-key memory", "product-key memory", grad * memory_flops(s)))
        for i in range(s.layers):
            part = f"layer {i + 1}"
            if not train and i == s.layers - 1:
                items += [(part, t, v) for t, v in elastic_layer_terms(s, "last").items()]
                continue
            terms = elastic_layer_terms(s, "causal", streamed=True)
            items += [(part, t, grad * v) for t, v in terms.items()]
            if recompute:
                items.append((part, RECOMPUTED, sum(terms.values()) - once))
    elif form == "none":
        for i in range(s.layers):
            ffn = 2 * _linear(s.batch * s.seq_len, s.d_model, s.ffn_mult * s.d_model)
            items.append((f"layer {i + 1}", "FFN", grad * ffn))
    else:
        # fused attention's backward recomputes the scores: 5 products to the forward's 2
        core_grad = (3.5 if form == "sasrec-sdpa" else 3) if train else 1
        for i in range(s.layers):
            for term, value in sasrec_layer_terms(s).items():
                factor = core_grad if term == ATTENTION_CORE else grad
                items.append((f"layer {i + 1}", term, factor * value))
    if train:  # per row: logits of the real items h · E[1:]ᵀ, again in backward, two grads
        rows = loss_rows(form, s, context_len)
        items.append(("loss", "loss over the catalogue", 4 * 2 * s.d_model * s.items * rows))
    else:  # per user: logits = h · Eᵀ, the padding column included
        items.append(("head", "scores over the catalogue", 2 * s.d_model * (s.items + 1) * s.batch))
    return items


def _grouped(items: list[tuple[str, str, float]], by: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        out[item[by]] = out.get(item[by], 0) + item[2]
    return out


def flops_breakdown(
    form: str, mode: str, s: Shape, context_len: float | None = None
) -> dict[str, float]:
    """FLOPs of the whole model by part (query network, memory, layer 1..L, head or loss)."""
    return _grouped(_flop_items(form, mode, s, context_len), by=0)


def flops_terms(
    form: str, mode: str, s: Shape, context_len: float | None = None
) -> dict[str, float]:
    """FLOPs of the whole model by term of its formula, summed over the layers (QKV, N² core
    or stage-1 logits and causal scan, projection + FFN, ...): what the lab's hover lists.
    Terms that cost nothing at this shape are left out; the rest sum to `flops`."""
    terms = _grouped(_flop_items(form, mode, s, context_len), by=1)
    return {term: value for term, value in terms.items() if value}


def flops(form: str, mode: str, s: Shape, context_len: float | None = None) -> float:
    """Total FLOPs of one call (see `flops_breakdown`)."""
    return sum(flops_breakdown(form, mode, s, context_len).values())


# ----------------------------------------------------------------------------------------------
# Activation memory
#
# Estimates from counting the tensors each form creates (float32, 4 bytes; masks are bool,
# 1 byte), with coefficients checked against `cpu_peak_bytes` (benchmarks record the
# prediction beside the measurement). Units: BNd = B·N·d floats; S = B·h·N² attention scores;
# M = B·N² mask cells; BhNC = chunk matrices; BhNk = dispatcher weights.
# ----------------------------------------------------------------------------------------------


def _sasrec_layer_bytes(form: str, s: Shape) -> tuple[float, float, float]:
    """(saved for backward, inference working set, backward transient) of one SASRec layer.

    materialized: softmax output S floats and the ~mask M bytes are saved; inference holds
    two S-sized score tensors and two masks at once; backward makes two S-sized gradients.
    sdpa: no scores. Without padding the kernel masks causally by itself; with padding the
    (B, 1, N, N) mask the model builds is materialized as bool and, inside SDPA, converted to
    an additive float mask (4·M bytes) that backward keeps.
    Both: qkv, LayerNorms, residuals and the 4d-wide FFN, ~16 BNd saved, 11-15 BNd working.
    """
    bnd = s.batch * s.seq_len * s.d_model * FLOAT
    scores = s.batch * s.heads * s.seq_len**2 * FLOAT
    mask = s.batch * s.seq_len**2
    if form == "none":  # LayerNorm, the 4d-wide FFN and the residual only
        return 11 * bnd, 10 * bnd, 8 * bnd
    if form == "sasrec-materialized":
        return 16 * bnd + scores + mask, 15 * bnd + 2 * scores + 2 * mask, 2 * scores
    if s.padded:
        return 16 * bnd + 4 * mask, 15 * bnd + 5 * mask, 3 * bnd + 4 * mask
    return 16 * bnd, 11 * bnd, 3 * bnd


def _elastic_pass_bytes(s: Shape, n: int) -> tuple[float, float, float]:
    """(saved, working set, backward transient) of one causal pass over n tokens.

    ~20 B·n·d saved (FFN, LayerNorms, keys/values/queries and their chunked copies), two
    (C'×C') chunk products per chunk and head (2·B·h·n·C'), ~12 dispatcher-weight tensors
    (B·h·n·k); the local window adds (w_l × 2·w_l) score blocks and ~9 B·n·d in training.
    """
    b, h = s.batch, s.heads
    bnd = b * n * s.d_model * FLOAT
    chunks = 2 * b * h * n * min(s.chunk, n) * FLOAT
    weights = b * h * n * s.interests * FLOAT
    local_scores = 3 * 2 * b * h * n * min(s.local_window, n) * FLOAT
    local = 9 * bnd + local_scores if s.local_window else 0
    saved = 20 * bnd + chunks + 12 * weights + local
    return saved, 12 * bnd + chunks + 8 * weights + local_scores, 4 * bnd + chunks


def _elastic_layer_bytes(s: Shape, train: bool, last: bool) -> tuple[float, float, float]:
    """(saved, working set, backward transient) of one ELASTIC layer as the model runs it.

    inference: streamed, so the layer's input and output for all N plus one segment's working
    set; the last layer ('last' form) holds keys and values for all N and the stage-1
    weights (B,h,k,N), its FFN runs on one row. training: one pass over N, or, recomputing,
    only the layer's input and output are kept and backward rebuilds one segment at a time.
    """
    b, n, h = s.batch, s.seq_len, s.heads
    bnd = b * n * s.d_model * FLOAT
    segment = min(s.segment, n)
    if not train:
        if last:
            return 0.0, 5 * bnd + 4 * b * h * n * s.interests * FLOAT, 0.0
        return 0.0, 3 * bnd + _elastic_pass_bytes(s, segment)[1], 0.0
    if s.recomputes:
        saved, _, backward = _elastic_pass_bytes(s, segment)
        return 2 * bnd, 0.0, 2 * bnd + saved + backward
    saved, _, backward = _elastic_pass_bytes(s, n)
    return saved, 0.0, backward


def _query_network_bytes(s: Shape, train: bool) -> tuple[float, float, float]:
    """(saved, working set, backward transient) of the query network. Per level of n tokens:
    qkv and residuals (~8·B·n·d) and the (w × w) window scores (2·B·n·h·w). Inference attends
    a slice of ~S tokens at a time; training keeps every level and the pooled copies between
    them (~1/4 more), or, recomputing, nothing until backward rebuilds it."""
    lengths = query_window_lengths(s)

    def level(n: int) -> float:
        return (8 * s.batch * n * s.d_model + 2 * s.batch * n * s.heads * s.window) * FLOAT

    if not train:
        bnd = s.batch * lengths[0] * s.d_model * FLOAT
        return 0.0, 2 * bnd + level(min(lengths[0], max(s.segment, s.window))), 0.0
    every_level = 1.25 * sum(level(n) for n in lengths)
    return (0.0, 0.0, every_level) if s.recomputes else (every_level, 0.0, 0.0)


def _loss_bytes(form: str, s: Shape) -> float:
    """Transient of the fused loss: one chunk of ≤ 2048 rows of logits, which backward turns
    into their gradient in place (see `full_softmax_loss`), plus the gathered hidden rows and
    their gradient."""
    rows = loss_rows(form, s)
    return (min(rows, 2048) * s.items + 2 * rows * s.d_model) * FLOAT


def parameter_bytes(form: str, s: Shape) -> float:
    """Parameters (= their gradients in training), about: embeddings, (4 + 2m)·d² per layer,
    ELASTIC's memory values and 12·d² per query-network level."""
    d = s.d_model
    layers = s.layers * ((4 if form != "none" else 0) + 2 * s.ffn_mult) * d * d
    own = s.slots * d + 12 * d * d * len(query_window_lengths(s)) if form == "elastic" else 0
    return ((s.items + 1 + s.seq_len) * d + layers + own) * FLOAT


def _part_bytes(form: str, mode: str, s: Shape) -> dict[str, tuple[float, float, float]]:
    """(saved, working set, backward transient) of every part of the model."""
    _check_form(form)
    _check_mode(mode)
    train = mode == "train"
    bnd = s.batch * s.seq_len * s.d_model * FLOAT
    parts = {"embedding": (4 * bnd, bnd, 0.0)}
    if form == "elastic":
        parts["query network"] = _query_network_bytes(s, train)
        for i in range(s.layers):
            parts[f"layer {i + 1}"] = _elastic_layer_bytes(s, train, last=i == s.layers - 1)
    else:
        for i in range(s.layers):
            parts[f"layer {i + 1}"] = _sasrec_layer_bytes(form, s)
    if train:
        parts["loss"] = (0.0, 0.0, _loss_bytes(form, s))
    else:
        parts["head"] = (0.0, s.batch * (s.items + 1) * FLOAT, 0.0)
    return parts


def activation_bytes(form: str, mode: str, s: Shape) -> dict[str, float]:
    """Activation bytes by part. train: what the forward keeps for backward. infer: each
    part's working set (no_grad frees a part's tensors as the next one starts)."""
    which = 0 if mode == "train" else 1
    return {name: cost[which] for name, cost in _part_bytes(form, mode, s).items()}


def peak_bytes(form: str, mode: str, s: Shape) -> float:
    """Predicted peak memory of one call, above what was live before it.

    train: everything saved for backward, plus the largest backward transient (the loss's,
    a layer's, the recomputed query network's: they happen at different times), plus the
    gradients. infer: the embedded batch (held throughout) plus the largest working set.
    """
    return sum(peak_bytes_terms(form, mode, s).values())


def peak_bytes_terms(form: str, mode: str, s: Shape) -> dict[str, float]:
    """`peak_bytes`, term by term (they sum to it): infer, the embedded batch and the largest
    working set (named by its part); train, what each part saves for backward (the layers
    together), the largest backward transient (named) and the gradients."""
    parts = _part_bytes(form, mode, s)
    if mode == "infer":
        name, largest = max(
            ((name, cost[1]) for name, cost in parts.items() if name != "embedding"),
            key=lambda pair: pair[1],
        )
        return {"embedded batch": parts["embedding"][1], f"largest working set ({name})": largest}
    terms: dict[str, float] = {}
    for name, cost in parts.items():
        if cost[0]:
            key = f"saved for backward: {'layers' if name.startswith('layer') else name}"
            terms[key] = terms.get(key, 0.0) + cost[0]
    name, transient = max(((n, c[2]) for n, c in parts.items()), key=lambda pair: pair[1])
    terms[f"largest backward transient ({name})"] = transient
    terms["gradients"] = parameter_bytes(form, s)
    return terms


# ----------------------------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------------------------


@dataclass
class Measurement:
    median_ms: float  # median wall time of the timed calls, after warm-up
    peak_bytes: int  # peak of memory allocated during one call, above what was live before it
    times_ms: list[float]
    # median process CPU time (all threads) of the same calls: on a CPU shared with other work
    # it barely moves while wall time stretches; on a GPU it only covers the host side
    median_cpu_ms: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak of torch's CPU allocator during fn(), above what was live before it.

    The profiler with profile_memory=True records every allocation and free as a "[memory]"
    event with its size (negative for a free); their running sum in time order is the bytes
    live, and its maximum is the peak. Unlike the process RSS, this sees exactly the tensors
    torch allocates, and frees are seen the moment they happen.
    """
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        fn()
    events = [
        e
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    ]
    events.sort(key=lambda e: e.start_ns())  # stable: ties keep the order they were recorded
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def cpu_peak_self_check(mib: int = 64) -> tuple[int, int]:
    """Run `cpu_peak_bytes` on a known pattern -> (measured, true peak) in bytes.

    A tensor of `mib` MiB is written and freed, then one of half that size: the true peak is
    `mib` MiB — not 1.5× (the first is gone before the second exists), not 0 (both freed).
    """

    def pattern() -> None:
        big = torch.ones(mib * MiB // FLOAT)
        del big
        torch.ones(mib * MiB // FLOAT // 2)

    return cpu_peak_bytes(pattern), mib * MiB


def measure(
    fn: Callable[[], object], device: torch.device, repeats: int = 5, warmup: int = 1
) -> Measurement:
    """Median wall and CPU time of `repeats` calls after `warmup` calls, then the peak memory
    of one more call (see `measure_side_by_side`, of which this is the one-form case)."""
    return measure_side_by_side({"call": fn}, device, repeats, warmup)["call"]


def measure_side_by_side(
    calls: dict[str, Callable[[], object]], device: torch.device, repeats: int = 5,
    warmup: int = 1,
) -> dict[str, Measurement]:
    """Time several forms in alternating order: round r calls every form once, the order
    rotated by r, so a change in the machine's load (another process, a thermal step) reaches
    every form alike instead of whichever happened to run then. Each form gets `warmup`
    untimed calls first; its median wall and process-CPU time come from its `repeats` timed
    calls. Then the peak memory of one more call per form, on its own:
    torch.cuda.max_memory_allocated on CUDA, `cpu_peak_bytes` on CPU (the profiler's overhead
    never reaches the timings)."""
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu_times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start, cpu_start = time.perf_counter(), time.process_time()
            calls[name]()
            _sync(device)
            times[name].append((time.perf_counter() - start) * 1e3)
            cpu_times[name].append((time.process_time() - cpu_start) * 1e3)
    results = {}
    for name in names:
        if device.type == "cuda":
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            calls[name]()
            _sync(device)
            peak = torch.cuda.max_memory_allocated(device) - base
        else:
            peak = cpu_peak_bytes(calls[name])
        results[name] = Measurement(statistics.median(times[name]), peak, times[name],
                                    statistics.median(cpu_times[name]))
    return results


# ----------------------------------------------------------------------------------------------
# The guard and the benchmark
# ----------------------------------------------------------------------------------------------

BUDGET_FRACTION = 0.6  # of available RAM / free GPU memory: headroom for everything else


def format_bytes(n: float) -> str:
    if n >= 10 * GiB:
        return f"{n / GiB:.0f} GiB"
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / MiB:.0f} MiB"


def machine_info(device: torch.device) -> dict:
    """What the numbers were measured on: CPU model, threads, torch version, GPU name, and the
    1-minute load average (other work on the machine slows every timing)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu
            )
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": device.type,
        "load_avg": round(os.getloadavg()[0], 2),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _mem_available() -> int:
    """MemAvailable from /proc/meminfo; 8 GiB where there is none (not Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file counts kB
    except OSError:
        pass
    return 8 * GiB


def memory_budget(device: torch.device) -> int:
    """A fraction of the free GPU memory on CUDA, of the available RAM otherwise."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(BUDGET_FRACTION * free)
    return int(BUDGET_FRACTION * _mem_available())


def check_budget(
    form: str, mode: str, s: Shape, device: torch.device, budget_bytes: int | None = None
) -> str | None:
    """None if the point's predicted peak fits the budget, else the reason in one sentence."""
    need = peak_bytes(form, mode, s)
    budget = memory_budget(device) if budget_bytes is None else budget_bytes
    if need <= budget:
        return None
    return (
        f"{form} {mode} at N={s.seq_len} (B={s.batch}) needs ~{format_bytes(need)} of "
        f"activations, over the {format_bytes(budget)} budget of this machine ({device.type})"
    )


# copies of the parameters that live through training (elastic.train.Trainer): the weights,
# their gradients, AdamW's two moments, the best-on-validation weights, and the end-of-epoch
# copy a stop or resume continues from (weights + both moments)
TRAINING_PARAMETER_COPIES = {"weights": 1, "gradients": 1, "Adam moments": 2, "best weights": 1,
                             "end-of-epoch copy": 3}


def training_state_bytes(form: str, s: Shape) -> float:
    """Bytes the trainer holds for the whole run, whatever the batch: every copy of the
    parameters in TRAINING_PARAMETER_COPIES."""
    return sum(TRAINING_PARAMETER_COPIES.values()) * parameter_bytes(form, s)


def training_peak_bytes(form: str, s: Shape, eval_batch: int = 256) -> float:
    """Predicted peak memory of a whole training run (`Trainer.fit`) at batch `s.batch`.

    The parameter copies held throughout, plus the larger of a training step's activations
    and an evaluation batch's (its forward, and the (B, |I|+1) scores the ranking copies
    twice). `peak_bytes(form, "train", s)` counts the gradients once already.
    """
    state = training_state_bytes(form, s) - parameter_bytes(form, s)  # gradients: in the step
    evaluation = replace(s, batch=eval_batch)
    ranking = 2 * eval_batch * (s.items + 1) * FLOAT
    step = max(peak_bytes(form, "train", s),
               peak_bytes(form, "infer", evaluation) + ranking + parameter_bytes(form, s))
    return state + step


def check_training_budget(
    form: str, s: Shape, device: torch.device, eval_batch: int = 256,
    budget_bytes: int | None = None,
) -> str | None:
    """None if a training run at this shape fits the budget, else the reason in one sentence."""
    need = training_peak_bytes(form, s, eval_batch)
    budget = memory_budget(device) if budget_bytes is None else budget_bytes
    if need <= budget:
        return None
    held = training_state_bytes(form, s)
    return (
        f"training {form} at N={s.seq_len}, batch {s.batch} needs ~{format_bytes(need)} "
        f"(~{format_bytes(held)} of it weights, gradients, Adam moments and the trainer's "
        f"copies), over the {format_bytes(budget)} budget of this machine ({device.type})"
    )


def _build(form: str, mode: str, s: Shape, device: torch.device) -> Callable[[], None]:
    """One call of the benchmark: `model(ids)` under no_grad, or loss + backward."""
    name, settings = s.model_settings(form)
    model = build_model(name, **settings).to(device)
    ids = torch.randint(
        1, s.items + 1, (s.batch, s.seq_len), generator=torch.Generator().manual_seed(0)
    )
    ids = ids.to(device)  # histories without padding: every position is real
    if mode == "infer":
        model.eval()

        def call() -> None:
            with torch.no_grad():
                model(ids)

    else:
        model.train()

        def call() -> None:
            model.training_loss(ids, ids).backward()
            model.zero_grad(set_to_none=True)  # each call leaves memory as it found it

    return call


def bench(
    impls: list[str],
    ns: list[int],
    k: int = 8,
    slots: int = 256,
    items: int = 1000,
    batch: int = 32,
    d_model: int = 64,
    layers: int = 2,
    heads: int = 2,
    mode: str = "infer",
    device: torch.device | str = "cpu",
    repeats: int = 5,
    warmup: int = 1,
    budget_bytes: int | None = None,
    max_point_s: float | None = None,
    progress: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Measure every (impl, N) point, the impls of one N side by side in alternating order
    (`measure_side_by_side`); one record per point.

    A point the memory guard refuses, or whose predicted time (the last measured N of the same
    impl, scaled by FLOPs, times the warmup + repeats + 1 calls) exceeds `max_point_s`, gets
    `"skipped": reason` and no measurement.
    """
    _check_mode(mode)
    device = pick_device(device) if isinstance(device, str) else device
    last: dict[str, tuple[int, float, float]] = {}  # impl -> (N, flops, median ms)
    records = []
    for n in sorted(ns):
        point: dict[str, dict] = {}
        calls: dict[str, Callable[[], None]] = {}
        for impl in impls:
            s = Shape(batch=batch, seq_len=n, d_model=d_model, heads=heads, layers=layers,
                      interests=k, slots=slots, items=items)
            work = flops(impl, mode, s)
            record = {
                "impl": impl,
                "mode": mode,
                "N": n,
                "k": k,
                "slots": slots,
                "items": items,
                "batch": batch,
                "device": device.type,
                "median_ms": None,
                "peak_mib": None,
                "flops": round(work),
                "predicted_mib": round(peak_bytes(impl, mode, s) / MiB, 1),
            }
            reason = check_budget(impl, mode, s, device, budget_bytes)
            if reason is None and max_point_s is not None and impl in last:
                prev_n, prev_flops, prev_ms = last[impl]
                call_s = prev_ms / 1e3 * work / prev_flops
                if call_s * (warmup + repeats + 1) > max_point_s:
                    reason = (
                        f"{impl} {mode} at N={n} would take ~{call_s:.0f} s per call "
                        f"(N={prev_n} scaled by FLOPs), over the {max_point_s:.0f} s limit per "
                        f"point on this machine ({device.type})"
                    )
            if reason is None:
                calls[impl] = _build(impl, mode, s, device)
            else:
                record["skipped"] = reason
            point[impl] = record
        try:
            measured = measure_side_by_side(calls, device, repeats, warmup) if calls else {}
        except torch.cuda.OutOfMemoryError:  # then one at a time, to skip only the one
            measured = {}
            torch.cuda.empty_cache()
            for impl, call in calls.items():
                try:
                    measured[impl] = measure(call, device, repeats, warmup)
                except torch.cuda.OutOfMemoryError:
                    point[impl]["skipped"] = (f"{impl} {mode} at N={n} ran out of memory on "
                                              f"{device.type}")
                    torch.cuda.empty_cache()
        del calls
        if device.type == "cuda":
            torch.cuda.empty_cache()
        for impl, m in measured.items():
            record = point[impl]
            record["median_ms"] = round(m.median_ms, 2)
            record["median_cpu_ms"] = round(m.median_cpu_ms, 2)
            record["peak_mib"] = round(m.peak_bytes / MiB, 1)
            last[impl] = (n, record["flops"], m.median_ms)
        for impl in impls:
            records.append(point[impl])
            if progress is not None:
                progress(point[impl])
    return records
