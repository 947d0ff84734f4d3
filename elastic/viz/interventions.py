"""Interventions for one user: what the prediction does when a mechanism is changed.

An attention map shows where weight goes; an intervention shows what the prediction does
without it. `compare` runs ELASTIC twice on one user's history — as trained, and under an
`Intervention` or on an edited history — and returns both passes: the top-10 (item ids and
scores), the held-out item's rank (full ranking, the user's history filtered, by the
evaluator's own `target_ranks`), and the stage-1 / stage-2 maps. `knockout_effects` removes
each dispatcher in turn and keeps the change of every top item's score and rank. `Experiment`
names the changes the app offers and `run_experiment` turns one into a comparison.

`elastic.ablation` asks the same questions of all users at once (test NDCG@10 under each
intervention); this module asks them of one user, so that a participant sees the list move —
or not move. No plotting, no Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from elastic.ablation import DONOR_SHIFT
from elastic.data import InteractionData, pad_left
from elastic.evaluate import target_ranks
from elastic.models import PAD, ElasticModel, Intervention
from elastic.viz.analysis import top_items, user_history

TOP = 10  # the list a participant reads
NOT_RANKED = 0  # the rank given to an item the ranking filters (it is in the user's history)


@dataclass
class Pass:
    """One forward pass of ELASTIC for one user, trimmed to the real history positions."""

    history: np.ndarray  # (n,) the items the pass read, oldest first
    seen: np.ndarray  # (S,) item ids filtered from the ranking (what the user has consumed)
    scores: np.ndarray  # (|I|+1,) next-item scores; column 0 (padding) is -inf
    top_items: np.ndarray  # (top,) best first, padding and `seen` filtered
    target_rank: int | None  # 1-based rank of the held-out item; None without a target
    stage1: np.ndarray  # (L, h, k, n): dispatcher j's weights over the history
    stage2: np.ndarray  # (L, h, n, k): token t's weights over the k interests
    slot_ids: np.ndarray  # (k,) memory slots of the dispatchers, best first
    gates: np.ndarray  # (k,) their gates

    @property
    def top_scores(self) -> np.ndarray:
        return self.scores[self.top_items]


@dataclass
class Comparison:
    """The user's pass as trained (`before`) and under the change (`after`)."""

    before: Pass
    after: Pass
    intervention: Intervention  # what the second pass ran under
    edited: bool  # True when the second pass read an edited history
    before_top_now: np.ndarray  # (top,) rank of each original top item after (0: filtered)
    after_top_was: np.ndarray  # (top,) rank of each new top item before (0: filtered)

    @property
    def entered(self) -> np.ndarray:
        """Items in the changed top list that were not in the original one, best first."""
        return self.after.top_items[~np.isin(self.after.top_items, self.before.top_items)]

    @property
    def left(self) -> np.ndarray:
        """Items of the original top list that the changed one lost, best first."""
        return self.before.top_items[~np.isin(self.before.top_items, self.after.top_items)]

    @property
    def same_order(self) -> bool:
        return np.array_equal(self.before.top_items, self.after.top_items)

    @property
    def largest_score_change(self) -> float:
        """The largest |score change| among the original top items (what moved the list)."""
        items = self.before.top_items
        return float(np.max(np.abs(self.after.scores[items] - self.before.scores[items])))

    @property
    def spread(self) -> float:
        """Score of the first item minus the last one's in the original list: the scale on
        which a score change can reorder it."""
        scores = self.before.top_scores
        return float(scores[0] - scores[-1]) if scores.size else 0.0


def _real_items(history_ids: torch.Tensor) -> np.ndarray:
    ids = history_ids[0].cpu().numpy()
    return ids[ids != PAD]


def _target_ranks(scores: np.ndarray, items: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """`target_ranks` of each of `items` in one user's ranking: the evaluator's rule (padding
    and `seen` filtered, ties in the item's favour, an item is never its own competitor, so an
    item in `seen` is still ranked, as a held-out repeat is)."""
    items = np.asarray(items, dtype=np.int64)
    seen = np.unique(np.asarray(seen, dtype=np.int64))
    m = len(items)
    batch = torch.from_numpy(np.asarray(scores, dtype=np.float32)).unsqueeze(0).expand(m, -1)
    seen_rows = torch.arange(m).repeat_interleave(len(seen))  # (m·S,)
    seen_items = torch.from_numpy(seen).repeat(m)  # (m·S,)
    return target_ranks(batch, torch.from_numpy(items), seen_rows, seen_items).numpy()


def ranks_of(scores: np.ndarray, items: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """1-based rank of each of `items` among the candidates (the evaluator's rule), and
    NOT_RANKED for an item that is itself in `seen` (the ranking filters it)."""
    items = np.asarray(items, dtype=np.int64)
    if items.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.where(np.isin(items, seen), NOT_RANKED, _target_ranks(scores, items, seen))


def _checked(intervention: Intervention, k: int) -> Intervention:
    """The intervention, once its knockouts name real dispatchers. (Knocking out all k is the
    branch removed: `ElasticModel` resolves that itself.)"""
    if any(not 0 <= j < k for j in intervention.knockout):
        raise ValueError(f"knockout {intervention.knockout} names a dispatcher outside 0..{k - 1}")
    return intervention


def _run(model: ElasticModel, ids: torch.Tensor, change: Intervention, seen: np.ndarray,
         target: int | None, top: int) -> Pass:
    device = next(model.parameters()).device
    logits, inter = model(ids.to(device), return_intermediates=True, intervention=change)
    n = int((ids[0] != PAD).sum())
    scores = logits[0].float().cpu().numpy()
    return Pass(
        history=_real_items(ids),
        seen=seen,
        scores=scores,
        top_items=top_items(scores, seen, top),
        target_rank=None if target is None else int(_target_ranks(scores, [target], seen)[0]),
        stage1=inter.stage1_weights[0, ..., -n:].float().cpu().numpy(),  # (L, h, k, n)
        stage2=inter.stage2_weights[0, :, :, -n:].float().cpu().numpy(),  # (L, h, n, k)
        slot_ids=inter.slot_ids[0].cpu().numpy(),
        gates=inter.gates[0].float().cpu().numpy(),
    )


def _require_elastic(model) -> None:
    if not isinstance(model, ElasticModel):
        raise ValueError(
            "interventions need an ELASTIC model: SASRec has no dispatchers and no memory "
            "slots to knock out or swap"
        )


def _one_history(history_ids: torch.Tensor, name: str = "the history") -> None:
    if history_ids.dim() != 2 or history_ids.shape[0] != 1:
        raise ValueError(f"{name} must be one user's item ids, shape (1, N); got "
                         f"{tuple(history_ids.shape)}")
    if not bool((history_ids != PAD).any()):
        raise ValueError(f"{name[:1].upper() + name[1:]} holds no item: keep at least one.")


@torch.no_grad()
def compare(
    model: ElasticModel,
    history_ids: torch.Tensor,
    target: int | None = None,
    intervention: Intervention | None = None,
    changed_ids: torch.Tensor | None = None,
    seen: np.ndarray | None = None,
    changed_seen: np.ndarray | None = None,
    top: int = TOP,
) -> Comparison:
    """Run `model` on one user's history as trained and changed, and compare the two.

    history_ids (1, N) left-padded; `target` the held-out item (its rank is reported, never
    filtered). The second pass runs under `intervention` and reads `changed_ids` (1, N) when
    given (an edited history), else the same history. `seen` is what the ranking filters (the
    evaluator filters everything the user consumed before the target; default: the items of
    `history_ids`); `changed_seen` is the filter of the changed pass (default: `seen` and the
    items of `changed_ids`; `edited_history` gives the exact one for an edit).
    """
    _require_elastic(model)
    _one_history(history_ids)
    own = _real_items(history_ids)
    seen = np.unique(own if seen is None else np.asarray(seen, dtype=np.int64))
    if changed_ids is None:
        changed_ids, changed_seen = history_ids, seen
    else:
        _one_history(changed_ids, "the edited history")
        if changed_seen is None:
            changed_seen = np.union1d(seen, _real_items(changed_ids))
    changed_seen = np.unique(np.asarray(changed_seen, dtype=np.int64))
    change = _checked(intervention or Intervention(), model.config.num_interests)
    was_training = model.training
    model.eval()
    try:
        before = _run(model, history_ids, Intervention(), seen, target, top)
        after = _run(model, changed_ids, change, changed_seen, target, top)
    finally:
        model.train(was_training)
    return Comparison(
        before=before,
        after=after,
        intervention=change,
        edited=changed_ids is not history_ids,
        before_top_now=ranks_of(after.scores, before.top_items, after.seen),
        after_top_was=ranks_of(before.scores, after.top_items, before.seen),
    )


def edited_history(history: np.ndarray, max_len: int, remove=(), append=()):
    """An edited history -> (changed_ids (1, max_len), changed_seen).

    `history` is the user's whole history before the target (oldest first); every occurrence
    of the items in `remove` is dropped, `append` is added after the last item. The ranking of
    the edited user filters what that user has consumed: the history without the removed items,
    plus the appended ones — a removed item becomes a candidate again."""
    history = np.asarray(history, dtype=np.int64)
    kept = history[~np.isin(history, np.asarray(remove, dtype=np.int64))]
    edited = np.concatenate([kept, np.asarray(append, dtype=np.int64)])
    return torch.from_numpy(pad_left([edited], max_len)), np.unique(edited)


# ----------------------------------------------------------------------------------------------
# Each dispatcher knocked out in turn
# ----------------------------------------------------------------------------------------------


@dataclass
class KnockoutEffects:
    """What each dispatcher's removal does to the user's top items."""

    items: np.ndarray  # (m,) the top items as trained, best first
    scores: np.ndarray  # (m,) their scores as trained
    score_change: np.ndarray  # (m, k): score with dispatcher j knocked out − as trained
    rank_after: np.ndarray  # (m, k): each item's rank with dispatcher j knocked out
    replaced: np.ndarray  # (k,) how many of the m items leave the top m without dispatcher j
    target_rank: int | None  # the held-out item's rank as trained
    target_rank_after: np.ndarray | None  # (k,) and with dispatcher j knocked out
    slot_ids: np.ndarray  # (k,)
    gates: np.ndarray  # (k,)

    @property
    def spread(self) -> float:
        return float(self.scores[0] - self.scores[-1]) if self.scores.size else 0.0


@torch.no_grad()
def knockout_effects(
    model: ElasticModel,
    history_ids: torch.Tensor,
    target: int | None = None,
    seen: np.ndarray | None = None,
    top: int = TOP,
) -> KnockoutEffects:
    """Knock out each of the k dispatchers in turn (`Intervention(knockout=(j,))`: its stage-2
    weight is 0 in every layer, the others share the weight) and keep, for every item of the
    user's top list, the change of its score and its rank."""
    _require_elastic(model)
    _one_history(history_ids)
    seen = np.unique(_real_items(history_ids) if seen is None else np.asarray(seen, np.int64))
    k = model.config.num_interests
    was_training = model.training
    model.eval()
    try:
        base = _run(model, history_ids, Intervention(), seen, target, top)
        knocked = [  # the same pass as `compare`'s, once per dispatcher
            _run(model, history_ids, _checked(Intervention(knockout=(j,)), k), seen, target,
                 top)
            for j in range(k)
        ]
    finally:
        model.train(was_training)
    items = base.top_items
    m = len(items)
    return KnockoutEffects(
        items=items,
        scores=base.top_scores,
        score_change=np.stack([p.scores[items] - base.top_scores for p in knocked], axis=1),
        rank_after=np.stack([ranks_of(p.scores, items, seen) for p in knocked], axis=1),
        replaced=np.array([m - int(np.isin(p.top_items, items).sum()) for p in knocked]),
        target_rank=base.target_rank,
        target_rank_after=None if target is None else np.array([p.target_rank for p in knocked]),
        slot_ids=base.slot_ids,
        gates=base.gates,
    )


# ----------------------------------------------------------------------------------------------
# The experiments the app offers, and what their numbers say
# ----------------------------------------------------------------------------------------------

EXPERIMENTS = ("knockout", "donor", "random", "off", "remove", "plant")


@dataclass(frozen=True)
class Experiment:
    """One change a participant can make to one user's pass (plain values: cacheable, and
    shareable in a URL)."""

    kind: str  # one of EXPERIMENTS
    dispatcher: int = 0  # knockout: the dispatcher removed (0 = D1, the best slot)
    donor: int = 0  # donor: the user (index) whose history retrieves the experts
    seed: int = 0  # random: the seed of the k distinct slots drawn
    remove: tuple[int, ...] = ()  # remove: the history items dropped (every occurrence)
    interest: int = 0  # plant: the planted interest whose items are appended
    count: int = 8  # plant: how many of its items

    def __post_init__(self) -> None:
        if self.kind not in EXPERIMENTS:
            raise ValueError(f"unknown experiment {self.kind!r}; choose one of {EXPERIMENTS}")


def donor_of(user_index: int, num_users: int) -> int:
    """The ablation's donor (`elastic.ablation.DONOR_SHIFT`): user i takes the experts of user
    (i + U/2) mod U, a fixed derangement."""
    return (user_index + max(1, int(DONOR_SHIFT * num_users))) % num_users


def random_slots(num_slots: int, k: int, seed: int) -> torch.Tensor:
    """(1, k) distinct memory slots drawn uniformly, as `elastic.ablation` draws them."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(num_slots, generator=generator)[:k].unsqueeze(0)


def planted_items(data: InteractionData, interest: int, count: int,
                  exclude: np.ndarray = ()) -> np.ndarray:
    """The `count` most consumed items of planted interest `interest` (synthetic data), counted
    over every user's history without its held-out item, `exclude` left out; most consumed
    first, ties by id."""
    if data.truth is None:
        raise ValueError(f"dataset {data.name!r} has no planted interests")
    consumed = np.bincount(np.concatenate([s[:-1] for s in data.sequences]),
                           minlength=data.num_items + 1)
    candidates = np.flatnonzero(data.truth.item_interest == interest)
    candidates = candidates[~np.isin(candidates, np.asarray(exclude, dtype=np.int64))]
    order = np.lexsort((candidates, -consumed[candidates]))
    return candidates[order[:count]]


def run_experiment(model: ElasticModel, data: InteractionData, user_index: int,
                   experiment: Experiment, top: int = TOP) -> Comparison:
    """One user's test history (the held-out item as target) as trained and under
    `experiment`."""
    _require_elastic(model)
    history, held_out = user_history(data, user_index)
    max_len = model.config.max_len
    ids = torch.from_numpy(pad_left([history], max_len))  # (1, N)
    device = next(model.parameters()).device
    kind, change, edit = experiment.kind, Intervention(), {}
    if kind == "knockout":
        change = Intervention(knockout=(experiment.dispatcher,))
    elif kind == "donor":
        donor, _ = user_history(data, experiment.donor)
        change = Intervention(donor_ids=torch.from_numpy(pad_left([donor], max_len)).to(device))
    elif kind == "random":
        slots = random_slots(model.config.num_slots, model.config.num_interests, experiment.seed)
        change = Intervention(slot_ids=slots.to(device))
    elif kind == "off":
        change = Intervention(dispatch=False)
    elif kind == "remove":
        edit = {"remove": experiment.remove}
    else:  # plant
        exclude = np.append(history, held_out)
        edit = {"append": planted_items(data, experiment.interest, experiment.count, exclude)}
    changed_ids, changed_seen = (
        edited_history(history, max_len, **edit) if edit else (None, None)
    )
    return compare(model, ids, held_out, change, changed_ids, history, changed_seen, top)


def experiment_phrase(experiment: Experiment, data: InteractionData) -> str:
    """What was changed, as the opening of a sentence ("with D3 knocked out")."""
    kind = experiment.kind
    if kind == "knockout":
        return f"with D{experiment.dispatcher + 1} knocked out"
    if kind == "donor":
        return f"with user {data.user_ids[experiment.donor]}'s experts"
    if kind == "random":
        return f"with random memory slots (seed {experiment.seed})"
    if kind == "off":
        return "with the dispatcher branch off"
    if kind == "remove":
        n = len(experiment.remove)
        return f"without the {n} removed item{'s' if n != 1 else ''}"
    name = data.truth.interest_names[experiment.interest] if data.truth else experiment.interest
    return f"with {experiment.count} items of planted interest {name} appended"


def unchanged_meaning(experiment: Experiment) -> str:
    """What an unchanged list says about the mechanism the experiment removed."""
    return {
        "knockout": f"for this user, D{experiment.dispatcher + 1} does not drive the list",
        "donor": "for this user, on this model, the memory slots do not drive the list",
        "random": "for this user, on this model, the memory slots do not drive the list",
        "off": "for this user, the dispatchers do not drive the list: the local window, the "
               "feed-forward path and the residual stream carry it",
        "remove": "for this user, these items do not drive the list",
        "plant": "the appended items do not move the list",
    }[experiment.kind]


def verdict(comparison: Comparison, phrase: str, meaning: str = "") -> str:
    """One plain sentence, computed from the numbers: how the top list and the held-out item's
    rank changed `phrase` ("with D3 knocked out"), and `meaning` when the list did not move."""
    c = comparison
    n = len(c.before.top_items)
    opening = phrase[:1].upper() + phrase[1:]
    scale = (f"scores move by at most {c.largest_score_change:.3f}; the list spans "
             f"{c.spread:.2f}")
    if c.same_order:
        head = f"{opening}, the top-{n} is unchanged: the same items in the same order ({scale})"
    elif c.entered.size == 0:
        head = f"{opening}, the top-{n} holds the same items in a different order ({scale})"
    else:
        verb = "is" if c.entered.size == 1 else "are"
        head = f"{opening}, {c.entered.size} of the top-{n} items {verb} replaced ({scale})"
    a, b = c.before.target_rank, c.after.target_rank
    if a is not None and b is not None:
        head += (f"; the held-out item stays at rank {a}" if a == b
                 else f"; the held-out item moves from rank {a} to {b}")
    if c.same_order and meaning:
        return f"{head}. {meaning[:1].upper() + meaning[1:]}."
    return head + "."


def knockout_verdict(effects: KnockoutEffects) -> str:
    """One sentence on what removing each dispatcher does to the top list."""
    k, m = len(effects.replaced), len(effects.items)
    largest = float(np.abs(effects.score_change).max()) if effects.score_change.size else 0.0
    scale = f"scores move by at most {largest:.3f}; the list spans {effects.spread:.2f}"
    if not effects.replaced.any():
        return (f"Removing any one of the {k} dispatchers leaves all {m} items in the list "
                f"({scale}): for this user, no single dispatcher drives the list.")
    movers = [f"D{j + 1} replaces {int(r)}" for j, r in enumerate(effects.replaced) if r]
    still = k - len(movers)
    return (f"Removed one at a time, {', '.join(movers)} of the {m} items; "
            f"{still} of the {k} dispatchers leave the list's items in place ({scale}).")


# ----------------------------------------------------------------------------------------------
# The measured ablation over all users (benchmarks/results/ablation.json)
# ----------------------------------------------------------------------------------------------

NOISE = 0.02  # relative NDCG@10 change within which one seed's run cannot tell a difference


def ablation_rows(record: dict) -> list[dict]:
    """The rows of `benchmarks/ablation.py`'s record, for a table (changes relative to the
    model as trained, written as signed percentages)."""
    return [
        {
            "intervention": row["name"] + (f" (mean of {row['runs']})" if row["runs"] > 1
                                           else ""),
            "test NDCG@10": row["metrics"]["NDCG@10"],
            "Δ NDCG@10": f"{row['change']['NDCG@10']:+.1%}",
            "test HR@10": row["metrics"]["HR@10"],
            "Δ HR@10": f"{row['change']['HR@10']:+.1%}",
        }
        for row in record["ablation"]
    ]


def ablation_source(record: dict) -> str:
    """Where the measurement came from, and when."""
    machine = record.get("machine", {})
    return (
        f"Measured by `benchmarks/ablation.py` on {record['date'][:10]} (commit "
        f"{record['commit']}, {machine.get('cpu', 'unknown CPU')}, torch "
        f"{machine.get('torch', '?')}) for `{record['checkpoint']}`: test items of "
        f"{record['dataset']['users']:,} users, full ranking, history filtered "
        "(`benchmarks/results/ablation.md`)."
    )


def ablation_verdict(record: dict, noise: float = NOISE) -> str:
    """Which interventions move test NDCG@10 by more than `noise`, and what that says."""
    rows = [r for r in record["ablation"] if r["name"] != "as trained"]
    change = {r["name"].split(" (")[0]: r["change"]["NDCG@10"] for r in rows}
    large = [f"{name} ({value:+.1%})" for name, value in change.items() if abs(value) > noise]
    small = [f"{name} ({value:+.1%})" for name, value in change.items() if abs(value) <= noise]
    parts = []
    if large:
        parts.append(f"{', '.join(large)} move{'s' if len(large) == 1 else ''} test NDCG@10 by "
                     f"more than {noise:.0%}")
    if small:
        parts.append(f"{', '.join(small)} stay{'s' if len(small) == 1 else ''} within "
                     f"{noise:.0%}")
    sentence = "; ".join(parts)
    sentence = sentence[:1].upper() + sentence[1:] + "."
    swaps = [change[n] for n in ("another user's experts", "random slots") if n in change]
    branch = change.get("dispatchers off", 0.0)
    if swaps and all(abs(v) <= noise for v in swaps):
        if abs(branch) > noise:
            sentence += (" The dispatchers drive the list, but which memory slots a user "
                         "retrieves barely matters: any user's experts gather this user's "
                         "history as well, so the memory map shows where retrieval goes, not "
                         "what changes the list.")
        else:
            sentence += (" Which memory slots a user retrieves barely matters to this model: "
                         "its experts are nearly inert.")
    return sentence


def slot_verdict(record: dict, noise: float = NOISE) -> str:
    """What the measured ablation says about the memory map: do the retrieved slots matter?"""
    change = {r["name"]: r["change"]["NDCG@10"] for r in record["ablation"]}
    donor, rand = change.get("another user's experts"), change.get("random slots")
    if donor is None or rand is None:
        return ""
    figures = (f"another user's experts {donor:+.1%}, random slots {rand:+.1%} of test NDCG@10, "
               f"over all {record['dataset']['users']:,} users of the shipped demo")
    if abs(donor) <= noise and abs(rand) <= noise:
        return (f"**Which slots a user retrieves barely changes the recommendations** "
                f"({figures}): this map shows where retrieval goes, not what drives the list. "
                "The dispatchers do; Dispatcher attention → Experiment tests it.")
    return (f"**The retrieved slots drive the recommendations** ({figures}): another user's "
            "slots change the list.")
