"""The shared loss: chunked full softmax equals plain cross-entropy, gradients included; the
sampled softmax's negatives, its logQ correction, and its convergence to the full softmax."""

import math

import pytest
import torch
import torch.nn.functional as F

from elastic.data import SyntheticConfig, leave_one_out, make_synthetic
from elastic.evaluate import PopularityScorer, evaluate
from elastic.models import build_model
from elastic.models.common import (
    NEGATIVE_SAMPLERS,
    NegativeSampler,
    full_softmax_loss,
    negative_distribution,
    sampled_softmax_loss,
)
from elastic.train import TrainConfig, Trainer, seed_everything


def test_chunked_full_softmax_equals_plain_cross_entropy_with_gradients():
    torch.manual_seed(0)
    hidden = torch.randn(37, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(21, 8, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 21, (37,))  # some 0 = no target
    got = full_softmax_loss(hidden, weight, targets, chunk_rows=5)
    keep = targets != 0
    logits = hidden[keep] @ weight.T
    logits[:, 0] = float("-inf")
    want = F.cross_entropy(logits, targets[keep])
    torch.testing.assert_close(got, want.float(), rtol=1e-6, atol=1e-6)
    g1 = torch.autograd.grad(got, (hidden, weight))
    g2 = torch.autograd.grad(want, (hidden, weight))
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_chunk_rows_shrink_with_the_catalogue(monkeypatch):
    """A million-item catalogue must not hold 2048 × |I| logits: the chunk shrinks."""
    import elastic.models.common as common

    rows_seen = []
    real = common._chunk_ce_sum
    monkeypatch.setattr(common, "_chunk_ce_sum",
                        lambda h, w, t: rows_seen.append(h.shape[0]) or real(h, w, t))
    monkeypatch.setattr(common, "LOGITS_PER_CHUNK", 21 * 4)
    hidden, weight = torch.randn(10, 3), torch.randn(21, 3)
    full_softmax_loss(hidden, weight, torch.randint(1, 21, (10,)))
    assert rows_seen == [4, 4, 2]


def test_sampled_softmax_is_the_logq_corrected_formula_with_accidental_hits_removed():
    torch.manual_seed(0)
    hidden = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(8, 4, dtype=torch.float64)
    targets = torch.tensor([2, 5, 7])
    candidates = torch.tensor([5, 1, 5, 3])  # 5 twice: a repeated draw counts twice
    log_expected = torch.tensor([0.3, -1.0, 0.3, 2.0], dtype=torch.float64)
    got = sampled_softmax_loss(hidden, weight, targets, candidates, log_expected)
    want = []
    for r in range(3):
        s = hidden[r] @ weight.T  # (|I|+1,)
        terms = [s[targets[r]]] + [
            s[c] - lq for c, lq in zip(candidates, log_expected, strict=True) if c != targets[r]
        ]
        want.append(torch.logsumexp(torch.stack(terms), 0) - s[targets[r]])
    torch.testing.assert_close(got, torch.stack(want).mean().float())
    # every candidate an accidental hit: only the target is left, the loss is exactly 0
    one = sampled_softmax_loss(hidden, weight, torch.tensor([5, 5, 5]), torch.tensor([5, 5]),
                               torch.zeros(2))
    assert one.item() == 0.0


def test_negative_distributions():
    counts = torch.tensor([0, 5, 0, 9, 1], dtype=torch.long)  # item 3 most popular, then 1
    uniform = negative_distribution("uniform", counts)
    popularity = negative_distribution("popularity", counts)
    zipf = negative_distribution("log-uniform", counts)
    for q in (uniform, popularity, zipf):
        assert q[0] == 0 and q.sum().item() == pytest.approx(1.0)
    assert uniform[1:].tolist() == [0.25] * 4
    assert popularity[1:].tolist() == pytest.approx([6 / 19, 1 / 19, 10 / 19, 2 / 19])
    # popularity ranks 1, 3, 0, 2 (ties by id): q = log((r + 2) / (r + 1)) / log(5)
    assert zipf[1:].tolist() == pytest.approx(
        [math.log(3 / 2) / math.log(5), math.log(5 / 4) / math.log(5),
         math.log(2) / math.log(5), math.log(4 / 3) / math.log(5)]
    )
    with pytest.raises(ValueError, match="sampler must be"):
        negative_distribution("zipf", counts)


@pytest.mark.parametrize("kind", NEGATIVE_SAMPLERS)
def test_sampler_draws_follow_its_logq(kind):
    """Over many batches each item is drawn as often as exp(log_expected) says."""
    torch.manual_seed(0)
    counts = torch.tensor([0, 40, 3, 0, 12, 7, 1, 25], dtype=torch.long)
    targets = torch.tensor([1, 1, 4, 7, 7, 7, 5, 2])
    sampler = NegativeSampler(kind, counts, num_negatives=64, batch_negatives=16)
    drawn = torch.zeros(8, dtype=torch.float64)
    batches = 2000
    for _ in range(batches):
        ids, log_expected = sampler.candidates(targets)
        assert ids.shape == (80,) and ids.min() >= 1
        drawn += torch.bincount(ids, minlength=8)
    # in-batch draws follow this batch's targets; the correction assumes the corpus frequency
    batch_p = torch.bincount(targets, minlength=8).double() / len(targets)
    expected = 64 * sampler.q + 16 * batch_p
    torch.testing.assert_close(drawn / batches, expected, rtol=0.05, atol=0.02)
    sampler_only = NegativeSampler(kind, counts, 64, 0)
    ids, log_expected = sampler_only.candidates(targets)
    torch.testing.assert_close(log_expected.double(), (64 * sampler_only.q[ids]).log(),
                               rtol=1e-6, atol=1e-6)


def _gradient_gap(hidden, weight, targets, sampler, corrected, batches=400):
    """Relative distance of the mean sampled-softmax gradient from the full softmax's."""
    full = torch.autograd.grad(full_softmax_loss(hidden, weight, targets), hidden)[0]
    total = torch.zeros_like(hidden)
    for _ in range(batches):
        ids, log_expected = sampler.candidates(targets)
        log_expected = log_expected if corrected else torch.zeros_like(log_expected)
        loss = sampled_softmax_loss(hidden, weight, targets, ids, log_expected)
        total += torch.autograd.grad(loss, hidden)[0]
    return float((total / batches - full).norm() / full.norm())


@pytest.mark.parametrize(
    ("kind", "batch_negatives"),
    [("uniform", 0), ("log-uniform", 0), ("popularity", 0), ("popularity", 64)],
)
def test_logq_correction_makes_the_sampled_gradient_approach_the_full_softmax(
    kind, batch_negatives
):
    """With the correction, the sampled gradient is a consistent estimate of the full one;
    without it the gradient is biased (a skewed sampler over-weights popular items)."""
    torch.manual_seed(0)
    num_items = 40
    hidden = torch.randn(64, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(num_items + 1, 6, dtype=torch.float64)
    popular = torch.distributions.Categorical(1.0 / torch.arange(1.0, num_items + 1))
    targets = popular.sample((64,)) + 1  # Zipf-like targets
    counts = torch.bincount(targets, minlength=num_items + 1)
    sampler = NegativeSampler(kind, counts, num_negatives=512, batch_negatives=batch_negatives)
    corrected = _gradient_gap(hidden, weight, targets, sampler, corrected=True)
    assert corrected < 0.03  # 0.005..0.013 at these settings
    # uncorrected, even uniform negatives are off: 512 draws stand for 40 items, not 512
    assert _gradient_gap(hidden, weight, targets, sampler, corrected=False) > 3 * corrected


def test_a_sampled_softmax_with_in_batch_negatives_trains():
    data = make_synthetic(SyntheticConfig(num_users=300, num_items=80, planted_interests=4,
                                          min_seq_len=15, max_seq_len=30, seed=0))
    split = leave_one_out(data)
    seed_everything(0)
    model = build_model("sasrec", num_items=data.num_items, max_len=30, d_model=32,
                        num_layers=1)
    config = TrainConfig(epochs=6, batch_size=64, lr=5e-3, device="cpu", patience=None,
                         loss="sampled", sampler="popularity", num_negatives=32,
                         batch_negatives=32)
    trainer = Trainer(model, split, config)
    result = trainer.fit()
    popularity = evaluate(PopularityScorer(split), trainer.test_loader)
    assert result["test"]["HR@10"] > 2 * popularity["HR@10"]
    assert model.negative_sampler.batch_negatives == 32
    with pytest.raises(ValueError, match="needs negatives"):
        NegativeSampler("uniform", torch.ones(5, dtype=torch.long), 0, 0)
