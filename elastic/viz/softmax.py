"""One weight of a dispatcher map as the softmax that made it, with the model's own numbers.

A stage-1 weight w_jt (dispatcher j on history position t) is one entry of a softmax over
dispatcher j's sink (itself, seen as a token before the history) and every real position:

    w_jt = exp(a_jt − m) / Z,   Z = exp(a_j0 − m) + Σ_s exp(a_js − m),   m = the largest logit,

with a = cap·tanh(s/cap) the capped score s = (W_q D_j)·(W_k x_t)/√d_h. A stage-2 weight u_tj
(position t reading interest j) is one entry of a softmax over the k interests, with logits
ℓ_tj = q_t·I_j(t)/√d_h + log g_j (the gate's log-prior). The logits are the model's
(`ElasticIntermediates.stage1_logits`, `stage1_sink_logits`, `stage2_logits`, through
`UserView`); nothing here recomputes them, and `CellSoftmax.weight` equals the weight the model
returned (tests/viz/test_softmax.py holds every cell to it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from elastic.viz.analysis import UserView


@dataclass(frozen=True)
class CellSoftmax:
    """The softmax behind one weight: every logit it reads, and which entry is the cell."""

    stage: int  # 1: a dispatcher over the history; 2: a position over the k interests
    logits: np.ndarray  # (m,) the model's logits (−inf: left out: padding, a knocked-out j)
    labels: list[str]  # what each entry is
    index: int  # the entry whose weight this is
    model_weight: float  # the weight the model returned for it
    prior: np.ndarray | None = None  # stage 2: log g_j, included in each logit
    cap: float | None = None  # stage 1: the logits are cap·tanh(s/cap)

    @property
    def max_logit(self) -> float:
        return float(np.max(self.logits))

    @property
    def terms(self) -> np.ndarray:
        """(m,) exp(logit − max): the softmax's numerators, the largest one 1."""
        return np.exp(np.asarray(self.logits, dtype=np.float64) - self.max_logit)

    @property
    def denominator(self) -> float:
        return float(self.terms.sum())

    @property
    def weight(self) -> float:
        return float(self.terms[self.index] / self.denominator)

    @property
    def logit(self) -> float:
        return float(self.logits[self.index])

    def raw_score(self, index: int | None = None) -> float | None:
        """Stage 1: the score s before the cap (s = cap·atanh(a/cap)); None for stage 2."""
        if self.cap is None:
            return None
        a = float(self.logits[self.index if index is None else index])
        return float(self.cap * np.arctanh(np.clip(a / self.cap, -1 + 1e-12, 1 - 1e-12)))


def stage1_cell(
    view: UserView,
    layer: int,
    head: int,
    dispatcher: int,
    position: int,
    titles: Sequence[str],
    cap: float | None = None,
) -> CellSoftmax:
    """The stage-1 softmax of dispatcher `dispatcher` in (layer, head) at history index
    `position`: entry 0 is the sink, entry 1 + t is position t."""
    logits = np.concatenate(
        [
            view.stage1_sink_logits[layer, head, dispatcher, None],
            view.stage1_logits[layer, head, dispatcher],
        ]
    ).astype(np.float64)
    labels = [f"D{dispatcher + 1} itself (its sink)"] + [
        f"position {t + 1}: {title}" for t, title in enumerate(titles)
    ]
    return CellSoftmax(
        stage=1,
        logits=logits,
        labels=labels,
        index=1 + position,
        model_weight=float(view.stage1[layer, head, dispatcher, position]),
        cap=cap,
    )


def stage2_cell(view: UserView, layer: int, head: int, position: int, dispatcher: int):
    """The stage-2 softmax of history index `position` in (layer, head) over the k interests,
    at entry `dispatcher`."""
    logits = view.stage2_logits[layer, head, position].astype(np.float64)
    with np.errstate(divide="ignore"):
        prior = np.log(np.asarray(view.gates, dtype=np.float64))
    return CellSoftmax(
        stage=2,
        logits=logits,
        labels=[f"D{j + 1}" for j in range(logits.size)],
        index=dispatcher,
        model_weight=float(view.stage2[layer, head, position, dispatcher]),
        prior=prior,
    )


def _num(x: float, digits: int = 4) -> str:
    """A number for LaTeX: 4 significant digits, powers of ten written out."""
    if not np.isfinite(x):
        return r"-\infty" if x < 0 else r"\infty"
    text = f"{x:.{digits}g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        return rf"{mantissa} \times 10^{{{int(exponent)}}}"
    return text


def softmax_latex(cell: CellSoftmax, dispatcher: int, position: int) -> str:
    """The cell's softmax written out with its numbers, for `st.latex`: the formula on one line,
    the numbers on the next (one line overflowed a half-width column)."""
    j, t = dispatcher + 1, position + 1
    if cell.stage == 1:
        weight, logit = rf"w_{{{j},{t}}}", rf"a_{{{j},{t}}}"
        denominator = r"e^{a_{0}-m} + \sum_{s} e^{a_{s}-m}"
    else:
        weight, logit = rf"u_{{{t},{j}}}", rf"\ell_{{{t},{j}}}"
        denominator = r"\sum_{i=1}^{k} e^{\ell_{i}-m}"
    z = _num(cell.denominator)
    exponent = f"{_num(cell.logit)} - ({_num(cell.max_logit)})"
    return (
        rf"\begin{{aligned}}{weight} &= \frac{{e^{{{logit} - m}}}}{{{denominator}}}"
        rf" \\ &= \frac{{e^{{{exponent}}}}}{{{z}}}"
        rf" = \frac{{{_num(float(cell.terms[cell.index]))}}}{{{z}}} = {_num(cell.weight)}"
        r"\end{aligned}"
    )


def softmax_rows(cell: CellSoftmax, top: int = 6) -> dict[str, list]:
    """The entries of the denominator, largest first: the `top` largest, the cell's own and,
    for stage 1, the sink, then one row for all the others. Columns: entry, logit, exp(logit −
    m), share of the denominator (= that entry's weight)."""
    terms = cell.terms
    order = [int(i) for i in np.argsort(-terms, kind="stable")]
    keep = order[:top]
    for must in ([cell.index, 0] if cell.stage == 1 else [cell.index]):
        if must not in keep:
            keep.append(must)
    keep.sort(key=lambda i: -terms[i])
    z = cell.denominator
    rows: dict[str, list] = {"entry": [], "logit": [], "exp(logit − m)": [], "weight": []}
    if cell.prior is not None:
        rows["of which log g"] = []
    for i in keep:
        rows["entry"].append(("▶ " if i == cell.index else "") + cell.labels[i])
        rows["logit"].append(float(cell.logits[i]))
        rows["exp(logit − m)"].append(float(terms[i]))
        rows["weight"].append(float(terms[i] / z))
        if cell.prior is not None:
            rows["of which log g"].append(float(cell.prior[i]))
    rest = [i for i in range(terms.size) if i not in keep and np.isfinite(cell.logits[i])]
    if rest:
        rows["entry"].append(f"the other {len(rest)}, together")
        rows["logit"].append(float("nan"))
        rows["exp(logit − m)"].append(float(terms[rest].sum()))
        rows["weight"].append(float(terms[rest].sum() / z))
        if cell.prior is not None:
            rows["of which log g"].append(float("nan"))
    return rows


def mean_of_heads(cells: Sequence[CellSoftmax]) -> float:
    """The weight the 'mean' head shows: the mean of the heads' softmax weights."""
    return float(np.mean([c.weight for c in cells]))
