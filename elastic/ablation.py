"""Does a mechanism drive the recommendations? Evaluate the model with it changed.

An attention map shows where weight goes, not whether the prediction needs it. Each row of
`ablation_table` evaluates the same trained ELASTIC model (full ranking, history filtered, the
same users and targets) under one `Intervention`:

- ``as trained``: no change;
- ``another user's experts``: each user gets the dispatchers and gates that another user's
  history retrieves (user i takes user (i + U/2) mod U, a fixed derangement);
- ``random slots``: k memory slots drawn uniformly (distinct) instead of the retrieved ones,
  gated by the query's own scores for them;
- ``one dispatcher out``: dispatcher j's stage-2 weight set to 0 in every layer, for each j,
  averaged over j;
- ``dispatchers off``: the dispatcher branch removed (what is left is the local window);
- ``local window off``: the local-window branch removed;
- ``query reads a prefix``: the query reads only the first half of the history, as the training
  rule lets it, instead of the whole history.

A mechanism whose removal changes nothing is inert, whatever its map looks like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from elastic.data import EvalLoader
from elastic.evaluate import metrics_from_ranks, target_ranks
from elastic.models import ElasticModel, Intervention

DONOR_SHIFT = 0.5  # user i takes the experts of user (i + shift·U) mod U


@dataclass
class AblationRow:
    name: str  # what was changed
    metrics: dict[str, float]  # HR@10/20, NDCG@10/20, MRR
    change: dict[str, float]  # relative change of each metric against the model as trained
    runs: int = 1  # evaluations averaged (one per dispatcher for "one dispatcher out")

    def as_dict(self) -> dict:
        return {"name": self.name, "metrics": self.metrics, "change": self.change,
                "runs": self.runs}


def _ranks_under(model: ElasticModel, loader: EvalLoader, make, device) -> torch.Tensor:
    """Target ranks of every user of `loader` with `make(history_ids, rows) -> Intervention`."""
    ranks = []
    for start in range(0, loader.num_users, loader.batch_size):
        rows = torch.arange(start, min(start + loader.batch_size, loader.num_users))
        history = loader.history_ids[rows].to(device)
        change = make(history, rows)
        scores = model(history, intervention=change)
        seen_rows, seen_items = loader.seen_items(loader.user_index[rows])
        ranks.append(target_ranks(scores, loader.targets[rows].to(device), seen_rows,
                                  seen_items).cpu())
    return torch.cat(ranks)


def _relative(metrics: dict[str, float], base: dict[str, float]) -> dict[str, float]:
    return {name: (value - base[name]) / base[name] if base[name] else math.nan
            for name, value in metrics.items()}


@torch.no_grad()
def ablation_table(
    model: ElasticModel,
    loader: EvalLoader,
    seed: int = 0,
) -> list[AblationRow]:
    """Evaluate `model` on `loader`'s users as trained and under each intervention."""
    if not isinstance(model, ElasticModel):
        raise ValueError("ablation needs an ELASTIC model: SASRec has no experts to remove")
    was_training = model.training
    model.eval()
    try:
        return _table(model, loader, seed)
    finally:
        model.train(was_training)


def _table(model: ElasticModel, loader: EvalLoader, seed: int) -> list[AblationRow]:
    device = next(model.parameters()).device
    users, k = loader.num_users, model.config.num_interests
    generator = torch.Generator().manual_seed(seed)
    donor_of = (torch.arange(users) + max(1, int(DONOR_SHIFT * users))) % users
    random_slots = torch.stack([
        torch.randperm(model.config.num_slots, generator=generator)[:k] for _ in range(users)
    ])  # (U, k) distinct slots per user

    def half_context(history: torch.Tensor) -> torch.Tensor:
        return ((history != 0).sum(1) // 2).clamp_min(1)

    variants: list[tuple[str, list]] = [
        ("as trained", [lambda h, r: Intervention()]),
        ("another user's experts",
         [lambda h, r: Intervention(donor_ids=loader.history_ids[donor_of[r]].to(device))]),
        ("random slots", [lambda h, r: Intervention(slot_ids=random_slots[r].to(device))]),
        ("one dispatcher out",
         [lambda h, r, j=j: Intervention(knockout=(j,)) for j in range(k)]),
        ("dispatchers off (local window only)", [lambda h, r: Intervention(dispatch=False)]),
        ("local window off", [lambda h, r: Intervention(local_window=False)]),
        ("query reads the first half only",
         [lambda h, r: Intervention(query_context=half_context(h))]),
    ]
    if not model.config.local_window:  # nothing to remove, and nothing left without dispatchers
        variants = [v for v in variants if not v[0].startswith(("dispatchers off", "local"))]
    rows: list[AblationRow] = []
    base = None
    for name, makers in variants:
        runs = [metrics_from_ranks(_ranks_under(model, loader, make, device)) for make in makers]
        metrics = {m: math.fsum(r[m] for r in runs) / len(runs) for m in runs[0]}
        base = base or metrics
        rows.append(AblationRow(name, metrics, _relative(metrics, base), len(runs)))
    return rows


def format_table(rows: list[AblationRow]) -> str:
    """A Markdown table: HR@10, NDCG@10 and their relative change."""
    lines = [
        "| intervention | HR@10 | NDCG@10 | Δ HR@10 | Δ NDCG@10 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        runs = f" (mean of {row.runs})" if row.runs > 1 else ""
        lines.append(
            f"| {row.name}{runs} | {row.metrics['HR@10']:.4f} | {row.metrics['NDCG@10']:.4f} | "
            f"{row.change['HR@10']:+.1%} | {row.change['NDCG@10']:+.1%} |"
        )
    return "\n".join(lines)
