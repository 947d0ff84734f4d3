"""Full-ranking evaluation: every item is a candidate, the user's history is filtered out.

A scorer is any callable `history_ids (B, N) -> scores (B, |I|+1)`: a model, or the
`PopularityScorer` baseline, go through the same `evaluate`. For each user the target's rank is

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

import numpy as np
import torch
from torch import nn

from elastic.data import EvalLoader, InteractionData, LeaveOneOut, interest_agreement
from elastic.models import PAD

METRIC_NAMES = ("HR@10", "HR@20", "NDCG@10", "NDCG@20", "MRR")
CUTOFFS = (10, 20)
Scorer = Callable[[torch.Tensor], torch.Tensor]  # history_ids (B, N) -> scores (B, |I|+1)


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
) -> dict[str, float]:
    """Full-ranking metrics of `scorer` on the users of `loader` (one stage: valid or test).

    A model is put in eval mode for the call (and back in its previous mode after); its device
    is used unless `device` is given. Returns METRIC_NAMES plus "users".
    """
    was_training = isinstance(scorer, nn.Module) and scorer.training
    if isinstance(scorer, nn.Module):
        scorer.eval()
        if device is None:
            device = next(scorer.parameters()).device
    device = torch.device(device or "cpu")
    ranks = []
    try:
        for history_ids, targets, user_index in loader:
            scores = scorer(history_ids.to(device))  # (B, |I|+1)
            seen_rows, seen_items = loader.seen_items(user_index)
            ranks.append(target_ranks(scores, targets.to(device), seen_rows, seen_items).cpu())
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

    def __call__(self, history_ids: torch.Tensor) -> torch.Tensor:
        scores = self.scores.to(history_ids.device)
        return scores.expand(history_ids.shape[0], -1)  # (B, |I|+1)


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
