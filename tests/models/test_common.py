"""The shared loss: the fused, chunked full softmax equals plain cross-entropy in float64, and
in float32 against float64, gradients included; the sampled softmax's negatives, its logQ
correction, and its convergence to the full softmax."""

import math

import pytest
import torch
import torch.nn.functional as F

from elastic.complexity import cpu_peak_bytes
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
from elastic.models.reference import full_softmax_loss_reference
from elastic.train import TrainConfig, Trainer, seed_everything


def naive_full_softmax_loss(hidden, weight, targets):
    """Mean CE over the full (R, |I|+1) logits, padding column at -inf, PAD targets dropped."""
    keep = targets != 0
    logits = (hidden[keep] @ weight.T).masked_fill(torch.arange(weight.shape[0]) == 0,
                                                   float("-inf"))
    return F.cross_entropy(logits, targets[keep])


def loss_case(rows=37, items=20, d=8, dtype=torch.float64, seed=0):
    """hidden (rows, d), weight (items+1, d) leaves; targets with some 0 = no target."""
    torch.manual_seed(seed)
    hidden = torch.randn(rows, d, dtype=dtype).requires_grad_()
    weight = torch.randn(items + 1, d, dtype=dtype).requires_grad_()
    targets = torch.randint(0, items + 1, (rows,))
    targets[:3] = 0
    return hidden, weight, targets


def value_and_grads(loss_fn, hidden, weight, targets, **kwargs):
    loss = loss_fn(hidden, weight, targets, **kwargs)
    return (loss, *torch.autograd.grad(loss, (hidden, weight)))


@pytest.mark.parametrize("chunk_rows", [5, 37, 2048])
def test_full_softmax_loss_in_float32_equals_cross_entropy_in_float64_with_gradients(chunk_rows):
    """The shipped dtype against float64 autograd of the naive formula, forward and backward,
    chunked (a short last chunk) and in one chunk."""
    hidden, weight, targets = loss_case(items=300, d=16)
    want = value_and_grads(naive_full_softmax_loss, hidden, weight, targets)
    h32 = hidden.detach().float().requires_grad_()
    w32 = weight.detach().float().requires_grad_()
    got = value_and_grads(full_softmax_loss, h32, w32, targets, chunk_rows=chunk_rows)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == torch.float32
        scale = w.abs().max().item()
        torch.testing.assert_close(g.double(), w, rtol=0, atol=1e-5 * scale)


def test_full_softmax_loss_is_stable_where_exp_of_a_logit_overflows():
    """Logits of ±400: exp overflows float32 above 88, so the log-sum-exp must subtract the
    row's maximum first."""
    hidden, weight, targets = loss_case(items=50, dtype=torch.float64)
    hidden = (hidden.detach() * 50).requires_grad_()
    want = value_and_grads(naive_full_softmax_loss, hidden, weight, targets)
    got = value_and_grads(full_softmax_loss, hidden.detach().float().requires_grad_(),
                          weight.detach().float().requires_grad_(), targets, chunk_rows=8)
    for g, w in zip(got, want, strict=True):
        assert g.isfinite().all()
        torch.testing.assert_close(g.double(), w, rtol=0, atol=1e-5 * w.abs().max().item())


def test_full_softmax_loss_equals_its_reference_in_float64():
    """Held to the unfused path (F.cross_entropy, checkpointed chunks) to rounding."""
    hidden, weight, targets = loss_case()
    got = value_and_grads(full_softmax_loss, hidden, weight, targets, chunk_rows=5)
    want = value_and_grads(full_softmax_loss_reference, hidden, weight, targets, chunk_rows=5)
    want_naive = value_and_grads(naive_full_softmax_loss, hidden, weight, targets)
    for g, w, n in zip(got, want, want_naive, strict=True):
        assert g.dtype == w.dtype == torch.float64
        torch.testing.assert_close(g, n, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(w, n, rtol=1e-12, atol=1e-12)


def test_full_softmax_loss_passes_gradcheck():
    hidden, weight, targets = loss_case(rows=7, items=5, d=3)
    assert torch.autograd.gradcheck(
        lambda h, w: full_softmax_loss(h, w, targets, chunk_rows=2), (hidden, weight)
    )


def test_chunked_full_softmax_loss_equals_one_chunk():
    hidden, weight, targets = loss_case(rows=100, items=50, dtype=torch.float32)
    whole = value_and_grads(full_softmax_loss, hidden, weight, targets, chunk_rows=100)
    for chunk_rows in (1, 7, 64):
        chunked = value_and_grads(full_softmax_loss, hidden, weight, targets,
                                  chunk_rows=chunk_rows)
        for c, w in zip(chunked, whole, strict=True):
            torch.testing.assert_close(c, w, rtol=1e-6, atol=1e-7)


def test_pad_targets_are_ignored_and_get_no_gradient():
    hidden, weight, targets = loss_case(dtype=torch.float32)
    loss, grad_hidden, grad_weight = value_and_grads(full_softmax_loss, hidden, weight, targets,
                                                     chunk_rows=4)
    pad = targets == 0
    assert grad_hidden[pad].abs().sum() == 0 and grad_hidden[~pad].abs().sum() > 0
    assert grad_weight[0].abs().sum() == 0  # the padding item is never a candidate
    moved = hidden.detach().clone()
    moved[pad] += 100.0
    assert full_softmax_loss(moved, weight, targets, chunk_rows=4).item() == pytest.approx(
        loss.item())
    # the padding item's own score does not enter: moving its embedding changes nothing
    pad_moved = weight.detach().clone()
    pad_moved[0] = 50.0
    assert full_softmax_loss(hidden, pad_moved, targets, chunk_rows=4).item() == pytest.approx(
        loss.item())


def test_no_target_at_all_gives_zero_loss_and_zero_gradients():
    hidden, weight, _ = loss_case(rows=6, dtype=torch.float32)
    for targets in (torch.zeros(6, dtype=torch.long), torch.zeros(0, dtype=torch.long)):
        rows = hidden[: len(targets)]
        loss, grad_hidden, grad_weight = value_and_grads(full_softmax_loss, rows, weight,
                                                         targets)
        assert loss.item() == 0.0
        assert grad_hidden.shape == rows.shape and grad_hidden.abs().sum() == 0
        assert grad_weight.abs().sum() == 0


def test_only_the_inputs_that_require_grad_get_one():
    hidden, weight, targets = loss_case(dtype=torch.float32)
    _, want_hidden, want_weight = value_and_grads(full_softmax_loss, hidden, weight, targets)
    frozen_weight = weight.detach()
    loss = full_softmax_loss(hidden, frozen_weight, targets)
    torch.testing.assert_close(torch.autograd.grad(loss, hidden)[0], want_hidden)
    loss = full_softmax_loss(hidden.detach(), weight, targets)
    torch.testing.assert_close(torch.autograd.grad(loss, weight)[0], want_weight)


@pytest.mark.parametrize("weight_dtype", [torch.float32, torch.bfloat16])
def test_bf16_inputs_under_autocast_are_computed_in_float32(weight_dtype):
    """Loss float32, gradients in the inputs' dtypes, all equal to float64 on the same
    (bf16-rounded) inputs: autocast must not turn the products or the sums to bf16."""
    hidden, weight, targets = loss_case(rows=64, items=100, d=16, dtype=torch.float32)
    hidden_bf16 = hidden.detach().bfloat16().requires_grad_()
    weight_low = weight.detach().to(weight_dtype).requires_grad_()
    want = value_and_grads(naive_full_softmax_loss, hidden_bf16.detach().double().requires_grad_(),
                           weight_low.detach().double().requires_grad_(), targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = full_softmax_loss(hidden_bf16, weight_low, targets, chunk_rows=16)
        grads = torch.autograd.grad(loss, (hidden_bf16, weight_low))
    assert loss.dtype == torch.float32
    assert grads[0].dtype == torch.bfloat16 and grads[1].dtype == weight_dtype
    torch.testing.assert_close(loss.double(), want[0], rtol=1e-6, atol=0)
    for g, w in zip(grads, want[1:], strict=True):
        assert g.isfinite().all()
        # float32 sums, then one rounding to the gradient's dtype (bf16: 8 bits)
        rtol = 2**-8 if g.dtype == torch.bfloat16 else 1e-5
        torch.testing.assert_close(g.double(), w, rtol=rtol, atol=1e-5 * w.abs().max().item())


def test_chunk_rows_shrink_with_the_catalogue(monkeypatch):
    """A million-item catalogue must not hold 2048 × |I| logits: the chunk shrinks."""
    import elastic.models.common as common

    rows_seen = []
    real = common._item_logits
    monkeypatch.setattr(common, "_item_logits",
                        lambda h, items: rows_seen.append(h.shape[0]) or real(h, items))
    monkeypatch.setattr(common, "LOGITS_PER_CHUNK", 21 * 4)
    hidden = torch.randn(10, 3, requires_grad=True)
    weight = torch.randn(21, 3, requires_grad=True)
    full_softmax_loss(hidden, weight, torch.randint(1, 21, (10,))).backward()
    assert rows_seen == [4, 4, 2] * 2  # forward, then the logits again in backward


def test_full_softmax_loss_holds_one_chunk_of_logits_at_a_time():
    """Forward + backward peak: one (chunk_rows, |I|) chunk of logits, not (R, |I|)."""
    hidden, weight, targets = loss_case(rows=512, items=20_000, d=16, dtype=torch.float32)
    targets[targets == 0] = 1
    chunk_bytes = 64 * 20_000 * 4  # 5 MB; all rows' logits would be 41 MB
    small = (2 * weight.numel() + 4 * hidden.numel()) * 4  # ∂E, its cast, ∂h, the kept rows

    def step():
        full_softmax_loss(hidden, weight, targets, chunk_rows=64).backward()
        hidden.grad = weight.grad = None

    step()
    assert cpu_peak_bytes(step) <= chunk_bytes + small + 2**20


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
                                          facets=4, taste=0.8, min_seq_len=15, max_seq_len=30,
                                          seed=0))
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
