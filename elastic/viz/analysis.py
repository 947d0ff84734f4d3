"""What the app draws, computed from what the library returns (no plotting, no Streamlit).

Every function reads a model's public outputs (`ElasticIntermediates`, logits, slot ids) and the
dataset; none re-implements the model. `interest_item_scores` follows an interest vector into
item space, which needs the last two linear maps it passes through (the layer's output
projection and the final LayerNorm's gain): that is *direct logit attribution*, written out in
`_written_directions`. What a dispatcher *does* to the prediction is asked by intervention
instead (`elastic.viz.interventions`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from elastic.data import InteractionData, interest_agreement, pad_left
from elastic.models import PAD, ElasticModel, SequentialRecommender


@dataclass
class UserView:
    """One user's pass through ELASTIC, trimmed to the real (non-padding) history positions."""

    user_index: int  # index into data.sequences
    history: np.ndarray  # (n,) item ids the model reads, oldest first (the test history's tail)
    held_out: int  # the item that follows `history` (the leave-one-out test target)
    logits: np.ndarray  # (|I|+1,) next-item scores; column 0 is -inf
    stage1: np.ndarray  # (L, h, k, n): dispatcher j's weights over the history
    stage1_sink: np.ndarray  # (L, h, k): the weight j keeps on itself; with stage1, sums to 1
    stage2: np.ndarray  # (L, h, n, k): token t's weights over the k interests (rows sum to 1)
    slot_ids: np.ndarray  # (k,) memory slots of the dispatchers, best first
    gates: np.ndarray  # (k,) their gates (sum to 1)
    interest_vectors: np.ndarray  # (L, k, d): stage-1 outputs over the whole history
    # what the softmaxes read (elastic.viz.softmax shows one weight's): stage 1 over
    # [sink, positions], stage 2 over the k interests
    stage1_logits: np.ndarray | None = None  # (L, h, k, n): capped
    stage1_sink_logits: np.ndarray | None = None  # (L, h, k)
    stage2_logits: np.ndarray | None = None  # (L, h, n, k)


def user_history(data: InteractionData, user_index: int) -> tuple[np.ndarray, int]:
    """(history, held-out item): everything but the user's last item, and that item."""
    sequence = data.sequences[user_index]
    return sequence[:-1], int(sequence[-1])


@torch.no_grad()
def elastic_user_view(model: ElasticModel, data: InteractionData, user_index: int) -> UserView:
    """Run ELASTIC on one user's test history and keep what the views draw."""
    history, held_out = user_history(data, user_index)
    max_len = model.config.max_len
    ids = torch.from_numpy(pad_left([history], max_len))  # (1, N)
    device = next(model.parameters()).device
    logits, inter = model(ids.to(device), return_intermediates=True)
    n = min(len(history), max_len)
    return UserView(
        user_index=user_index,
        history=np.asarray(history[-n:]),
        held_out=held_out,
        logits=logits[0].float().cpu().numpy(),
        stage1=inter.stage1_weights[0, ..., -n:].float().cpu().numpy(),  # (L, h, k, n)
        stage1_sink=inter.stage1_sink[0].float().cpu().numpy(),  # (L, h, k)
        stage2=inter.stage2_weights[0, :, :, -n:].float().cpu().numpy(),  # (L, h, n, k)
        slot_ids=inter.slot_ids[0].cpu().numpy(),
        gates=inter.gates[0].float().cpu().numpy(),
        interest_vectors=inter.interest_vectors[0].float().cpu().numpy(),
        stage1_logits=inter.stage1_logits[0, ..., -n:].float().cpu().numpy(),
        stage1_sink_logits=inter.stage1_sink_logits[0].float().cpu().numpy(),
        stage2_logits=inter.stage2_logits[0, :, :, -n:].float().cpu().numpy(),
    )


@torch.no_grad()
def next_item_scores(model: SequentialRecommender, data: InteractionData, user_index: int):
    """(|I|+1,) next-item scores of any model for one user's test history."""
    history, _ = user_history(data, user_index)
    ids = torch.from_numpy(pad_left([history], model.config.max_len))
    device = next(model.parameters()).device
    return model(ids.to(device))[0].float().cpu().numpy()


def top_items(scores: np.ndarray, exclude: np.ndarray | None = None, top: int = 10) -> np.ndarray:
    """The `top` item ids with the highest scores, padding and `exclude` (the history) removed."""
    scores = np.array(scores, dtype=np.float64)  # a copy: the caller's array stays intact
    scores[PAD] = -np.inf
    if exclude is not None and len(exclude):
        scores[np.asarray(exclude)] = -np.inf
    top = min(top, int(np.isfinite(scores).sum()))
    best = np.argpartition(-scores, top - 1)[:top]
    return best[np.argsort(-scores[best], kind="stable")]


def rank_of(scores: np.ndarray, item: int, exclude: np.ndarray | None = None) -> int:
    """1-based rank of `item` among the candidates (history filtered, as the evaluator does)."""
    scores = np.array(scores, dtype=np.float64)
    target = scores[item]
    scores[PAD] = -np.inf
    if exclude is not None and len(exclude):
        scores[np.asarray(exclude)] = -np.inf
    scores[item] = -np.inf
    return int(1 + (scores > target).sum())


# ----------------------------------------------------------------------------------------------
# Interest vectors in item space (direct logit attribution)
# ----------------------------------------------------------------------------------------------


def _written_directions(
    model: ElasticModel, interests: np.ndarray, head_weights: np.ndarray, layer: int
) -> np.ndarray:
    """What each interest writes into the residual stream, as the final LayerNorm sees it.

    interests (k, d) = concat over heads of the stage-1 outputs I_j^h; head_weights (h, k) the
    share of each head's output taken from interest j. Layer output y = W_o · concat_h(Σ_j
    w_hj I_j^h) is linear in each interest, so interest j writes y_j = W_o · concat_h(w_hj I_j^h).
    The final LayerNorm centres and rescales by a positive per-user constant, then multiplies by
    γ: direction_j = γ ⊙ (y_j − mean(y_j)), exact up to that constant. Returns (k, d).
    """
    k, d = interests.shape
    h = head_weights.shape[0]
    per_head = interests.reshape(k, h, d // h) * head_weights.T[:, :, None]  # (k, h, dh)
    proj = model.layers[layer].proj.weight.detach().float().cpu().numpy()  # (d, d): out × in
    written = per_head.reshape(k, d) @ proj.T  # (k, d)
    centred = written - written.mean(axis=1, keepdims=True)
    gamma = model.final_norm.weight.detach().float().cpu().numpy()  # (d,)
    return centred * gamma


def _item_table(model: SequentialRecommender) -> np.ndarray:
    return model.item_weight.detach().float().cpu().numpy()  # (|I|+1, d)


def interest_item_scores(model: ElasticModel, view: UserView, layer: int = -1) -> np.ndarray:
    """(k, |I|+1): how strongly interest j of `layer` points at each catalogue item — the logit
    item i would get from a token that read interest j alone, through every head."""
    layer = layer % len(model.layers)
    h = view.stage1.shape[1]
    k = view.slot_ids.shape[0]
    directions = _written_directions(
        model, view.interest_vectors[layer], np.ones((h, k)), layer
    )  # (k, d)
    scores = directions @ _item_table(model).T  # (k, |I|+1)
    scores[:, PAD] = -np.inf
    return scores


# ----------------------------------------------------------------------------------------------
# Dispatchers against planted interests
# ----------------------------------------------------------------------------------------------


def strongest_dispatcher(stage1: np.ndarray) -> np.ndarray:
    """stage1 (k, n) -> (n,): the dispatcher that gathers each history item most."""
    return np.asarray(stage1).argmax(axis=0)


def gathered_items(stage1_row: np.ndarray, history: np.ndarray, top: int = 10):
    """(item ids, weights) of the `top` history items one dispatcher gathers most, strongest
    first. An item that occurs twice keeps its larger weight."""
    order = np.argsort(-np.asarray(stage1_row), kind="stable")
    items, weights, seen = [], [], set()
    for t in order:
        item = int(history[t])
        if item in seen:
            continue
        seen.add(item)
        items.append(item)
        weights.append(float(stage1_row[t]))
        if len(items) == top:
            break
    return np.array(items, dtype=np.int64), np.array(weights)


def with_position(
    items: np.ndarray, weights: np.ndarray, stage1_row: np.ndarray, history: np.ndarray,
    position: int | None,
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """The gathered items with the item at history index `position` marked: (items, weights,
    its index). An item outside the list is appended with its weight at that position; None
    (no position, or one past this history) leaves the list as it is."""
    if position is None or not 0 <= position < len(history):
        return items, weights, None
    item = int(history[position])
    hits = np.flatnonzero(np.asarray(items) == item)
    if hits.size:
        return items, weights, int(hits[0])
    items = np.append(np.asarray(items, dtype=np.int64), item)
    weights = np.append(np.asarray(weights, dtype=float), float(stage1_row[position]))
    return items, weights, len(items) - 1


def planted_interests_of_history(data: InteractionData, user_index: int, n: int) -> np.ndarray:
    """(n,) the planted interest of each of the last n history items (synthetic data only)."""
    if data.truth is None:
        raise ValueError(f"dataset {data.name!r} has no planted interests")
    history, _ = user_history(data, user_index)
    return data.truth.item_interest[np.asarray(history[-n:])]


def dispatcher_agreement(stage1: np.ndarray, planted: np.ndarray) -> float:
    """NMI between 'the dispatcher that gathers item t most' and item t's planted interest."""
    return interest_agreement(strongest_dispatcher(stage1), planted)


# ----------------------------------------------------------------------------------------------
# The interest memory over all users
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def retrieve_all(
    model: ElasticModel, data: InteractionData, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """(slot_ids (U, k), gates (U, k)) that every user's test history retrieves."""
    max_len = model.config.max_len
    device = next(model.parameters()).device
    slots, gates = [], []
    for start in range(0, len(data.sequences), batch_size):
        histories = [s[:-1] for s in data.sequences[start : start + batch_size]]
        ids = torch.from_numpy(pad_left(histories, max_len)).to(device)
        retrieval, _ = model.retrieve(ids)
        slots.append(retrieval.slot_ids.cpu().numpy())
        gates.append(retrieval.gates.float().cpu().numpy())
    return np.concatenate(slots), np.concatenate(gates)


def users_of_slot(slot_ids: np.ndarray, slot: int) -> np.ndarray:
    """Indices of the users whose k retrieved slots include `slot`."""
    return np.flatnonzero((np.asarray(slot_ids) == slot).any(axis=1))


def shared_items(
    data: InteractionData, users: np.ndarray, top: int = 10, min_share: float = 0.05
) -> list[dict]:
    """Items over-represented in the histories of `users` compared with all users.

    lift = (share of the group whose history holds the item) / (share of all users); only items
    held by at least 2 users and `min_share` of the group (a rare item held by two users has a
    huge lift and says nothing), strongest lift first (ties: more holders).
    """
    users = np.asarray(users)
    if users.size == 0:
        return []
    num_items = data.num_items
    holders_all = np.zeros(num_items + 1)
    holders_group = np.zeros(num_items + 1)
    in_group = np.zeros(len(data.sequences), dtype=bool)
    in_group[users] = True
    for u, sequence in enumerate(data.sequences):
        distinct = np.unique(sequence[:-1])
        holders_all[distinct] += 1
        if in_group[u]:
            holders_group[distinct] += 1
    share_group = holders_group / users.size
    share_all = holders_all / len(data.sequences)
    lift = np.divide(share_group, share_all, out=np.zeros_like(share_group), where=share_all > 0)
    min_users = min(users.size, max(2, int(np.ceil(min_share * users.size))))
    candidates = np.flatnonzero(holders_group >= min_users)
    order = sorted(candidates, key=lambda i: (-lift[i], -holders_group[i], i))[:top]
    return [
        {
            "item": int(i),
            "title": data.item_label(int(i)),
            "genre": data.item_genres[int(i)] if data.item_genres else "",
            "users": int(holders_group[i]),
            "share_of_group": float(share_group[i]),
            "share_of_all": float(share_all[i]),
            "lift": float(lift[i]),
        }
        for i in order
    ]


def label_shares(
    data: InteractionData, users: np.ndarray | None = None
) -> tuple[list[str], np.ndarray]:
    """(labels, shares): how the history items of `users` (default all) spread over the planted
    interests (synthetic) or the genres (a genre of a multi-genre item counts 1/#genres).
    Shares sum to 1; empty lists when the dataset has neither."""
    chosen = range(len(data.sequences)) if users is None else np.asarray(users)
    if data.truth is not None:
        labels = list(data.truth.interest_names)
        counts = np.zeros(len(labels))
        for u in chosen:
            counts += np.bincount(
                data.truth.item_interest[data.sequences[u][:-1]], minlength=len(labels)
            )
    elif data.item_genres is not None:
        genres = sorted({g for item in data.item_genres[1:] for g in item.split("|") if g})
        index = {g: i for i, g in enumerate(genres)}
        per_item = np.zeros((data.num_items + 1, len(genres)))
        for item, joined in enumerate(data.item_genres):
            parts = [g for g in joined.split("|") if g]
            for g in parts:
                per_item[item, index[g]] = 1.0 / len(parts)
        counts = np.zeros(len(genres))
        for u in chosen:
            counts += per_item[data.sequences[u][:-1]].sum(axis=0)
        labels = genres
    else:
        return [], np.zeros(0)
    total = counts.sum()
    return labels, counts / total if total else counts


def item_groups(data: InteractionData, items: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(label, group index) per item, to colour items consistently on every page: the planted
    interest on synthetic data, else the first genre (index in the sorted genre list), else
    one group for all."""
    items = np.asarray(items, dtype=np.int64)
    if data.truth is not None:
        groups = data.truth.item_interest[items]
        return [data.truth.interest_names[g] for g in groups], groups
    if data.item_genres is not None:
        firsts = [data.item_genres[i].split("|")[0] for i in items]
        vocabulary = sorted({g.split("|")[0] for g in data.item_genres[1:] if g})
        index = {g: k for k, g in enumerate(vocabulary)}
        return firsts, np.array([index.get(g, 0) for g in firsts], dtype=np.int64)
    return [""] * len(items), np.zeros(len(items), dtype=np.int64)
