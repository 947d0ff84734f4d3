"""The softmax behind one weight, with the model's own logits: it gives back the weight."""

from __future__ import annotations

import numpy as np
import pytest

from elastic.viz import analysis, softmax


@pytest.fixture(scope="module")
def view(data, model):
    return analysis.elastic_user_view(model, data, 4)


def test_every_stage1_weight_is_the_softmax_of_the_models_logits_and_sink(view, model):
    L, h, k, n = view.stage1.shape
    titles = [str(i) for i in view.history]
    cap = model.config.stage1_softcap
    for layer in range(L):
        for head in range(h):
            for j in range(k):
                for t in range(n):
                    cell = softmax.stage1_cell(view, layer, head, j, t, titles, cap=cap)
                    assert cell.weight == pytest.approx(cell.model_weight, rel=1e-5, abs=1e-7)
                    assert cell.model_weight == view.stage1[layer, head, j, t]
                    assert cell.logits.size == n + 1 and cell.labels[0].endswith("(its sink)")
    # without the sink the weights would not come back: it keeps a real share of every row
    assert (view.stage1_sink > 0).all() and view.stage1_sink.max() > 1e-3


def test_every_stage2_weight_is_the_softmax_of_the_models_logits(view):
    L, h, n, k = view.stage2.shape
    for layer in range(L):
        for head in range(h):
            for t in range(n):
                for j in range(k):
                    cell = softmax.stage2_cell(view, layer, head, t, j)
                    assert cell.weight == pytest.approx(view.stage2[layer, head, t, j],
                                                        rel=1e-5, abs=1e-7)  # fmt: skip
    # the logit includes the gate's log-prior: shifting it away changes the weights
    cell = softmax.stage2_cell(view, 0, 0, n - 1, 0)
    scores = cell.logits - cell.prior
    unprior = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    assert not np.allclose(unprior, view.stage2[0, 0, n - 1], atol=1e-4)


def test_the_mean_head_is_the_mean_of_the_heads_softmaxes(view):
    t, j = 3, 1
    titles = [str(i) for i in view.history]
    cells = [softmax.stage1_cell(view, 1, h, j, t, titles) for h in range(view.stage1.shape[1])]
    assert softmax.mean_of_heads(cells) == pytest.approx(view.stage1[1].mean(0)[j, t], rel=1e-5)


def test_the_written_out_softmax_holds_the_numbers():
    cell = softmax.CellSoftmax(
        stage=1,
        logits=np.array([2.0, 1.0, -np.inf, 0.0]),  # sink, three positions (one padding)
        labels=["D1 itself (its sink)", "position 1: a", "position 2: b", "position 3: c"],
        index=1,
        model_weight=0.0,
        cap=15.0,
    )
    z = 1 + np.exp(-1) + np.exp(-2)
    assert cell.max_logit == 2.0 and cell.denominator == pytest.approx(z)
    assert cell.weight == pytest.approx(np.exp(-1) / z)
    assert cell.raw_score() == pytest.approx(15 * np.arctanh(1 / 15))
    latex = softmax.softmax_latex(cell, dispatcher=0, position=0)
    assert r"w_{1,1}" in latex and f"{z:.4g}" in latex and f"{np.exp(-1) / z:.4g}" in latex
    rows = softmax.softmax_rows(cell, top=1)
    assert rows["entry"] == ["D1 itself (its sink)", "▶ position 1: a", "the other 1, together"]
    assert sum(rows["weight"]) == pytest.approx(1.0)  # the padding is left out, not counted
    assert softmax._num(3.2e-7) == r"3.2 \times 10^{-7}"
