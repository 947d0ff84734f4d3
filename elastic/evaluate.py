"""Full-ranking evaluation: every item is a candidate, the user's history is filtered out.

A scorer is any callable `history_ids (B, N) -> scores (B, |I|+1)`: a model, or the
`PopularityScorer` baseline, go through the same `evaluate`. Both are also `FactorisedScorer`s
(score = user_state · item_weight[item]), which `evaluate` and `top_k_items` score a chunk of
ITEM_CHUNK items at a time: B × ITEM_CHUNK scores at once, never B × |I|, so a catalogue of
millions of items ranks in bounded memory. For each user the target's rank is

    rank = 1 + #{candidates i : score_i > score_target}

over the candidates = all items except padding and the items the user saw before the target.
Ties count in the target's favour (the strict `>`); neural scores in float32 essentially never
tie, and `PopularityScorer` breaks its own ties, so no scorer here is flattered by it. A NaN
target score gets the worst rank, and NaN candidates rank above the target, so a diverged model
can never look good. If the target itself is in the history (a repeat consumption), it stays a
candidate: masking it would make the answer unreachable.

    HR@K   = [rank <= K]
    NDCG@K = [rank <= K] / log2(rank + 1)   (one relevant item, so the ideal DCG is 1)
    MRR    = 1 / rank                        (no cut-off)

each averaged over users. `interest_recovery` measures, on synthetic data, whether ELASTIC's
dispatchers and memory slots recover the planted interests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from elastic.data import EvalLoader, InteractionData, LeaveOneOut, interest_agreement
from elastic.models import PAD

METRIC_NAMES = ("HR@10", "HR@20", "NDCG@10", "NDCG@20", "MRR")
CUTOFFS = (10, 20)
Scorer = Callable[[torch.Tensor], torch.Tensor]  # history_ids (B, N) -> scores (B, |I|+1)
ITEM_CHUNK = 65536  # items scored at once: B × 65,536 scores (64 MiB at B = 256, float32)


@runtime_checkable
class FactorisedScorer(Protocol):
    """A scorer whose score of item i is user_state(history) · item_weight[i]."""

    item_weight: torch.Tensor  # (|I|+1, d)

    def user_state(self, history_ids: torch.Tensor) -> torch.Tensor:  # (B, N) -> (B, d)
        ...


def target_ranks(
    scores: torch.Tensor,
    targets: torch.Tensor,
    seen_rows: torch.Tensor | None = None,
    seen_items: torch.Tensor | None = None,
) -> torch.Tensor:
    """1-based rank of each target among the unfiltered items: (B,) LongTensor.

    scores (B, |I|+1); targets (B,); (seen_rows, seen_items) (S,) index the items each row saw
    before its target (they and the padding column are filtered; the target never is).
    """
    scores = scores.float().clone()
    rows = torch.arange(scores.shape[0], device=scores.device)
    target_scores = scores[rows, targets]  # (B,)
    scores[:, PAD] = float("-inf")
    if seen_rows is not None and seen_items is not None:
        scores[seen_rows.to(scores.device), seen_items.to(scores.device)] = float("-inf")
    scores[rows, targets] = float("-inf")  # the target is not its own competitor
    target_scores = torch.nan_to_num(target_scores, nan=float("-inf"))
    above = (scores > target_scores[:, None]) | scores.isnan()  # (B, |I|+1)
    return 1 + above.sum(1)


def _item_chunks(item_weight: torch.Tensor, item_chunk: int):
    """(first item id, item_weight rows) of each chunk of the catalogue, padding row included."""
    for start in range(0, item_weight.shape[0], item_chunk):
        yield start, item_weight[start : start + item_chunk]


def _mask_chunk(
    scores: torch.Tensor,
    start: int,
    seen_rows: torch.Tensor | None,
    seen_items: torch.Tensor | None,
) -> None:
    """Set the padding column and the seen items inside the chunk [start, start + C) to -inf."""
    if start == 0:
        scores[:, PAD] = float("-inf")
    if seen_rows is not None and seen_items is not None:
        inside = (seen_items >= start) & (seen_items < start + scores.shape[1])
        scores[seen_rows[inside], seen_items[inside] - start] = float("-inf")


def chunked_target_ranks(
    user_states: torch.Tensor,
    item_weight: torch.Tensor,
    targets: torch.Tensor,
    seen_rows: torch.Tensor | None = None,
    seen_items: torch.Tensor | None = None,
    item_chunk: int = ITEM_CHUNK,
) -> torch.Tensor:
    """`target_ranks` of the scores user_states (B, d) · item_weightᵀ, item_chunk items at a time.

    Same filtering, tie and NaN rules. The target's score is one dot product per user; a chunk's
    matrix product may round differently in the last bit, which can only move a rank when
    another item's score lies within rounding of the target's.
    """
    device = user_states.device
    targets = targets.to(device)
    if seen_rows is not None and seen_items is not None:
        seen_rows, seen_items = seen_rows.to(device), seen_items.to(device)
    target_scores = (user_states * item_weight[targets]).sum(-1)  # (B,)
    target_scores = torch.nan_to_num(target_scores, nan=float("-inf"))
    rows = torch.arange(user_states.shape[0], device=device)
    above = torch.zeros_like(targets)
    for start, weights in _item_chunks(item_weight, item_chunk):
        scores = user_states @ weights.T  # (B, C)
        _mask_chunk(scores, start, seen_rows, seen_items)
        mine = (targets >= start) & (targets < start + weights.shape[0])
        scores[rows[mine], targets[mine] - start] = float("-inf")  # not its own competitor
        above += ((scores > target_scores[:, None]) | scores.isnan()).sum(1)
    return 1 + above


@torch.no_grad()
def top_k_items(
    scorer: FactorisedScorer,
    history_ids: torch.Tensor,
    k: int = 10,
    seen_rows: torch.Tensor | None = None,
    seen_items: torch.Tensor | None = None,
    item_chunk: int = ITEM_CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best items of each history -> (scores (B, k), item ids (B, k)), best first.

    Padding and the (seen_rows, seen_items) pairs (`EvalLoader.seen_items`) are never
    recommended. The catalogue is scored item_chunk items at a time and merged into a running
    top-k, so memory is B × (item_chunk + k) scores for any catalogue size. Call it with the
    model in eval mode (`evaluate` does that for its own calls).
    """
    device = history_ids.device
    if seen_rows is not None and seen_items is not None:
        seen_rows, seen_items = seen_rows.to(device), seen_items.to(device)
    states = scorer.user_state(history_ids)  # (B, d)
    item_weight = scorer.item_weight.to(device)
    best_scores = states.new_empty(states.shape[0], 0)
    best_items = torch.empty(states.shape[0], 0, dtype=torch.long, device=device)
    for start, weights in _item_chunks(item_weight, item_chunk):
        scores = states @ weights.T  # (B, C)
        _mask_chunk(scores, start, seen_rows, seen_items)
        ids = torch.arange(start, start + weights.shape[0], device=device).expand_as(scores)
        merged_scores = torch.cat([best_scores, scores], 1)
        merged_items = torch.cat([best_items, ids], 1)
        best_scores, where = merged_scores.topk(min(k, merged_scores.shape[1]), dim=1)
        best_items = merged_items.gather(1, where)
    return best_scores, best_items


def metrics_from_ranks(ranks: torch.Tensor) -> dict[str, float]:
    """Mean HR@10/20, NDCG@10/20 and MRR of 1-based ranks (B,)."""
    ranks = ranks.double()
    metrics = {}
    for k in CUTOFFS:
        hit = ranks <= k
        metrics[f"HR@{k}"] = float(hit.double().mean())
        metrics[f"NDCG@{k}"] = float((hit / torch.log2(ranks + 1)).mean())
    metrics["MRR"] = float((1.0 / ranks).mean())
    return {name: metrics[name] for name in METRIC_NAMES}


@torch.no_grad()
def evaluate(
    scorer: Scorer,
    loader: EvalLoader,
    device: str | torch.device | None = None,
    item_chunk: int = ITEM_CHUNK,
) -> dict[str, float]:
    """Full-ranking metrics of `scorer` on the users of `loader` (one stage: valid or test).

    A model is put in eval mode for the call (and back in its previous mode after); its device
    is used unless `device` is given. A `FactorisedScorer` (every model, the popularity
    baseline) is ranked item_chunk items at a time (`chunked_target_ranks`); any other
    callable returns its (B, |I|+1) scores at once. Returns METRIC_NAMES plus "users".
    """
    was_training = isinstance(scorer, nn.Module) and scorer.training
    if isinstance(scorer, nn.Module):
        scorer.eval()
        if device is None:
            device = next(scorer.parameters()).device
    device = torch.device(device or "cpu")
    factorised = isinstance(scorer, FactorisedScorer)
    if factorised:
        item_weight = scorer.item_weight.to(device)
    ranks = []
    try:
        for history_ids, targets, user_index in loader:
            seen_rows, seen_items = loader.seen_items(user_index)
            if factorised:
                states = scorer.user_state(history_ids.to(device))  # (B, d)
                batch_ranks = chunked_target_ranks(
                    states, item_weight, targets, seen_rows, seen_items, item_chunk
                )
            else:
                scores = scorer(history_ids.to(device))  # (B, |I|+1)
                batch_ranks = target_ranks(scores, targets.to(device), seen_rows, seen_items)
            ranks.append(batch_ranks.cpu())
    finally:
        if was_training:
            scorer.train()
    if not ranks:
        raise ValueError("nothing to evaluate: the split has no users")
    all_ranks = torch.cat(ranks)
    return {**metrics_from_ranks(all_ranks), "users": int(all_ranks.numel())}


class PopularityScorer:
    """Scores every item by how often it occurs in the training sequences, the same for every
    user — the baseline any sequential model must beat.

    Ties between equal counts are broken by a fixed random order (a fraction in [0, 0.5) added
    to the count), so the evaluator's tie rule cannot flatter the baseline.
    """

    def __init__(self, split: LeaveOneOut, seed: int = 0) -> None:
        counts = np.zeros(split.num_items + 1, dtype=np.float64)
        if split.train:
            np.add.at(counts, np.concatenate(split.train), 1.0)
        tie_break = np.random.default_rng(seed).permutation(split.num_items + 1)
        counts += tie_break / (2.0 * (split.num_items + 1))
        counts[PAD] = -np.inf
        self.scores = torch.from_numpy(counts)  # (|I|+1,) float64
        # as a FactorisedScorer: every user's state is [1], an item's weight its score. float64:
        # in float32 the tie-breaking fraction of a count in the thousands would round away
        self.item_weight = self.scores[:, None]  # (|I|+1, 1)

    def __call__(self, history_ids: torch.Tensor) -> torch.Tensor:
        scores = self.scores.to(history_ids.device)
        return scores.expand(history_ids.shape[0], -1)  # (B, |I|+1)

    def user_state(self, history_ids: torch.Tensor) -> torch.Tensor:
        return torch.ones(history_ids.shape[0], 1, dtype=torch.float64, device=history_ids.device)


@torch.no_grad()
def interest_recovery(
    model: nn.Module,
    data: InteractionData,
    split: LeaveOneOut,
    max_len: int | None = None,
    max_users: int | None = 1000,
    batch_size: int = 128,
    seed: int = 0,
) -> dict[str, float]:
    """Do ELASTIC's dispatchers and memory slots recover the planted interests? (synthetic data)

    Reads each user's test history (last `max_len` items, default the model's) once:

    - dispatchers: each history item goes to its strongest dispatcher — the argmax over k of the
      last layer's stage-1 weights, heads summed. `dispatcher_nmi` pools all items, naming a
      dispatcher by its memory slot (the identity it shares across users);
      `dispatcher_nmi_per_user` averages the NMI inside each user's history, where the k
      dispatchers only have to separate that user's few interests;
    - memory: each user's top slot vs the user's dominant planted interest (`slot_nmi`);
    - gathering: each dispatcher's 10 heaviest history items (last layer, heads summed), for
      the dispatchers that gather — at least half of their weight on the history rather than
      on themselves (the sink), and 10 items of positive weight; `top10_one_interest` is the
      share of those (user, dispatcher) pairs whose 10 items all belong to one planted
      interest, `top10_purity` the mean share of the most common interest among the 10,
      `gathering_share` the share of all pairs that gather.

    Each NMI comes with `*_chance`: the same statistic after shuffling the model's labels
    (within each user for dispatchers, across users for slots) — what no learning scores.
    """
    if data.truth is None:
        raise ValueError(
            f"dataset {data.name!r} has no planted interests; interest recovery needs "
            "synthetic data"
        )
    was_training = model.training
    model.eval()
    try:
        return _interest_recovery(model, data, split, max_len, max_users, batch_size, seed)
    finally:
        model.train(was_training)


def _interest_recovery(model, data, split, max_len, max_users, batch_size, seed):
    device = next(model.parameters()).device
    loader = EvalLoader(split, "test", max_len or model.config.max_len, batch_size)
    item_interest = data.truth.item_interest
    slot_of_item, interest_of_item, user_of_item = [], [], []
    dispatcher_of_item = []
    top_slot, dominant = [], []
    purity, one_interest, gathering = [], [], []
    users = 0
    for history_ids, _targets, _users in loader:
        if max_users is not None and users >= max_users:
            break
        history_ids = history_ids[: None if max_users is None else max_users - users]
        output = model(history_ids.to(device), return_intermediates=True)
        if not isinstance(output, tuple):
            raise ValueError("interest recovery needs a model with dispatchers (ELASTIC)")
        intermediates = output[1]
        stage1 = intermediates.stage1_weights[:, -1].sum(1)  # (B, k, N): last layer, heads summed
        strongest = stage1.argmax(1).cpu()  # (B, N): dispatcher index per position
        slots = intermediates.slot_ids.cpu()  # (B, k)
        real = history_ids != PAD  # (B, N)
        interests = torch.from_numpy(item_interest)[history_ids]  # (B, N)
        rows = torch.arange(history_ids.shape[0])[:, None].expand_as(history_ids)
        dispatcher_of_item.append(strongest[real])
        slot_of_item.append(slots.gather(1, strongest)[real])
        interest_of_item.append(interests[real])
        user_of_item.append(rows[real] + users)
        top_slot.append(slots[:, 0])
        weights, heaviest = stage1.cpu().topk(min(10, stage1.shape[-1]), dim=-1)  # (B, k, 10)
        # (B, k): the weight on the history, the rest stays on the dispatcher itself (sink)
        on_history = intermediates.stage1_weights[:, -1].mean(1).sum(-1).cpu()
        for b in range(history_ids.shape[0]):
            dominant.append(int(np.bincount(interests[b][real[b]].numpy()).argmax()))
            gathers = (on_history[b] >= 0.5) & (weights[b] > 0).all(-1) & (weights.shape[-1] == 10)
            gathering.extend(gathers.tolist())
            for gathered in interests[b][heaviest[b][gathers]].numpy():  # (·, 10) interests
                share = np.bincount(gathered).max() / gathered.size
                purity.append(share)
                one_interest.append(share == 1.0)
        users += history_ids.shape[0]

    dispatcher = torch.cat(dispatcher_of_item).numpy()
    slot = torch.cat(slot_of_item).numpy()
    interest = torch.cat(interest_of_item).numpy()
    owner = torch.cat(user_of_item).numpy()
    top_slot_of_user = torch.cat(top_slot).numpy()
    rng = np.random.default_rng(seed)
    bounds = np.flatnonzero(np.diff(owner)) + 1  # items are grouped by user, in order
    per_user = list(zip(np.split(dispatcher, bounds), np.split(interest, bounds), strict=True))

    def shuffled_within_users(labels: np.ndarray) -> np.ndarray:
        return np.concatenate([rng.permutation(part) for part in np.split(labels, bounds)])

    return {
        "dispatcher_nmi": interest_agreement(slot, interest),
        "dispatcher_nmi_chance": interest_agreement(shuffled_within_users(slot), interest),
        "dispatcher_nmi_per_user": _mean(interest_agreement(d, i) for d, i in per_user),
        "dispatcher_nmi_per_user_chance": _mean(
            interest_agreement(rng.permutation(d), i) for d, i in per_user
        ),
        "slot_nmi": interest_agreement(top_slot_of_user, dominant),
        "slot_nmi_chance": interest_agreement(rng.permutation(top_slot_of_user), dominant),
        "top10_one_interest": _mean(one_interest) if one_interest else math.nan,
        "top10_purity": _mean(purity) if purity else math.nan,
        "gathering_share": _mean(gathering) if gathering else math.nan,
        "users": users,
        "items": int(interest.size),
    }


def _mean(values) -> float:
    values = list(values)
    return math.fsum(values) / len(values)
