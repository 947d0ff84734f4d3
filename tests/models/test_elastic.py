"""ELASTIC model: fast paths equal naive references, retrieval is exact, nothing leaks."""

import math

import pytest
import torch

from elastic.models import ElasticConfig, ElasticModel, memory_usage
from elastic.models.elastic import (
    ProductKeyMemory,
    causal_dispatch,
    causal_dispatch_reference,
    full_dispatch,
    full_dispatch_reference,
    take_prefix,
)


def _dispatch_inputs(b=2, h=2, k=3, n=11, dh=4, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    dq, kx, vx, q2 = (
        (torch.randn(b, h, m, dh, generator=g, dtype=torch.float64) * scale).requires_grad_()
        for m in (k, n, n, n)
    )
    log_gates = torch.randn(b, k, generator=g, dtype=torch.float64).log_softmax(-1)
    valid = torch.ones(b, n, dtype=torch.bool)
    valid[0, :4] = False  # left padding in the first sequence
    return dq, kx, vx, q2, log_gates, valid


@pytest.mark.parametrize("chunk", [1, 3, 4, 64])
@pytest.mark.parametrize("n", [1, 7, 16])
def test_causal_dispatch_equals_naive_reference_forward_and_backward(chunk, n):
    args = _dispatch_inputs(n=n)
    out, w2, _ = causal_dispatch(*args, cap=30.0, chunk=chunk)
    ref, ref_w2 = causal_dispatch_reference(*args, cap=30.0)
    valid = args[-1][:, None, :, None]
    torch.testing.assert_close(out * valid, ref * valid)
    torch.testing.assert_close(w2 * valid, ref_w2 * valid)
    leaves = args[:4]
    upstream = torch.randn_like(out) * valid
    grads = torch.autograd.grad((out * upstream).sum(), leaves)
    ref_grads = torch.autograd.grad((ref * upstream).sum(), leaves)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r)


def test_causal_dispatch_is_stable_for_huge_logits_in_float32():
    dq, kx, vx, q2, lg, valid = _dispatch_inputs(n=40, scale=40.0)  # raw logits ~ ±10⁴
    args32 = [t.detach().float() for t in (dq, kx, vx, q2, lg)]
    out, w2, _ = causal_dispatch(*args32, valid, cap=30.0, chunk=8)
    assert torch.isfinite(out).all() and torch.isfinite(w2).all()
    ref, _ = causal_dispatch_reference(dq.detach(), kx.detach(), vx.detach(), q2.detach(), lg,
                                       valid, cap=30.0)
    m = valid[:, None, :, None]
    torch.testing.assert_close((out * m).double(), ref * m, rtol=1e-3, atol=1e-3)


def test_full_dispatch_equals_naive_reference_forward_and_backward():
    dq, kx, vx, q2, lg, valid = _dispatch_inputs(n=9)
    out, w1, _w2, _ = full_dispatch(dq, kx, vx, q2, lg, valid, cap=30.0)
    ref = full_dispatch_reference(dq, kx, vx, q2, lg, valid, cap=30.0)
    torch.testing.assert_close(out, ref)
    grads = torch.autograd.grad(out.sum(), (dq, kx, vx, q2))
    ref_grads = torch.autograd.grad(ref.sum(), (dq, kx, vx, q2))
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r)
    # stage-1 rows are a softmax over the real tokens only
    torch.testing.assert_close(w1.sum(-1), torch.ones_like(w1.sum(-1)))
    assert (w1[0, ..., :4] == 0).all()


def test_last_position_of_causal_form_equals_full_form():
    dq, kx, vx, q2, lg, valid = _dispatch_inputs(n=13)
    causal, _, _ = causal_dispatch(dq, kx, vx, q2, lg, valid, cap=30.0, chunk=4)
    full, *_ = full_dispatch(dq, kx, vx, q2[:, :, -1:], lg, valid, cap=30.0)
    torch.testing.assert_close(causal[:, :, -1:], full)


@pytest.mark.parametrize("slots,k,kp", [(16, 4, None), (64, 8, 8), (256, 8, 12), (100, 1, 1)])
def test_product_key_retrieval_equals_brute_force(slots, k, kp):
    torch.manual_seed(0)
    cfg = ElasticConfig(d_model=16, num_heads=2, num_slots=slots, num_interests=k, subkey_topk=kp)
    memory = ProductKeyMemory(cfg)
    query = torch.randn(32, 16, dtype=torch.float64)
    memory.double()
    got = memory(query)
    ref_ids, ref_gates = memory.brute_force(query)
    assert torch.equal(got.slot_ids, ref_ids)
    torch.testing.assert_close(got.gates, ref_gates)
    assert got.dispatchers.shape == (32, k, 16)


def test_memory_usage_statistics():
    stats = memory_usage(torch.tensor([[0, 1], [0, 1]]), num_slots=4)
    assert stats["share_used"] == 0.5 and stats["dead_slots"] == 2
    assert math.isclose(stats["kl_to_uniform"], math.log(2))
    uniform = memory_usage(torch.arange(8).view(4, 2), num_slots=8)
    assert uniform["kl_to_uniform"] == pytest.approx(0.0, abs=1e-12)


def _small_model(**kw) -> ElasticModel:
    torch.manual_seed(0)
    cfg = dict(num_items=30, max_len=24, d_model=16, num_heads=2, num_interests=4,
               num_slots=16, query_window=4, query_pool=2, chunk_size=5, dropout=0.0)
    cfg.update(kw)
    return ElasticModel(ElasticConfig(**cfg)).double().eval()


def test_padding_more_left_padding_changes_nothing():
    model = _small_model()
    seq = torch.tensor([[3, 7, 7, 1, 9, 12, 4, 5, 28]])
    short = torch.nn.functional.pad(seq, (3, 0))  # N = 12
    long = torch.nn.functional.pad(seq, (15, 0))  # N = 24
    with torch.no_grad():
        a_logits, a = model(short, return_intermediates=True)
        b_logits, b = model(long, return_intermediates=True)
        torch.testing.assert_close(a_logits[:, 1:], b_logits[:, 1:])
        torch.testing.assert_close(a.query, b.query)
        assert torch.equal(a.slot_ids, b.slot_ids)
        torch.testing.assert_close(a.stage1_weights[..., -9:], b.stage1_weights[..., -9:])
        torch.testing.assert_close(model.encode(short)[:, -9:], model.encode(long)[:, -9:])


def test_take_prefix_right_aligns_the_first_c_items():
    ids = torch.tensor([[0, 0, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6]])
    got = take_prefix(ids, torch.tensor([2, 6]))
    assert got.tolist() == [[0, 0, 0, 0, 5, 6], [1, 2, 3, 4, 5, 6]]


@pytest.mark.parametrize("t", [9, 13, 20, 23])
def test_no_leakage_perturbing_items_after_t_changes_nothing_the_loss_uses(t):
    model = _small_model(max_len=24)
    g = torch.Generator().manual_seed(t)
    ids = torch.randint(1, 31, (3, 24), generator=g)
    ids[1, :6] = 0  # a padded sequence too
    context = torch.tensor([9, 4, 7])  # context prefix of each sequence (in real items)
    perturbed = ids.clone()
    perturbed[:, t + 1 :] = torch.randint(1, 31, perturbed[:, t + 1 :].shape, generator=g)
    with torch.no_grad():
        h1 = model.encode(ids, context_len=context)
        h2 = model.encode(perturbed, context_len=context)
    mask = model.loss_mask(ids, context)  # positions that enter the loss
    # all positions <= t the loss uses are unchanged
    used = mask.clone()
    used[:, t + 1 :] = False
    assert used.any()
    torch.testing.assert_close(h1[used], h2[used])
    # and the loss never covers a position whose target the query read
    length = (ids != 0).sum(1)
    for b in range(3):
        first_real = 24 - int(length[b])
        context_end = first_real + int(context[b])  # index of the first item not in the context
        assert not mask[b, : context_end - 1].any() and mask[b, context_end - 1 :].all()


def test_training_loss_is_finite_and_reaches_every_parameter_group():
    model = _small_model(balance_weight=0.01).float().train()
    ids = torch.randint(1, 31, (4, 24))
    loss = model.training_loss(ids[:, :-1], ids[:, 1:])
    loss.backward()
    assert torch.isfinite(loss)
    for name in ("memory.subkeys", "memory.values.weight", "query_net.out.weight",
                 "layers.0.dispatcher_q.weight", "embedding.items.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_intermediates_have_documented_shapes_and_stage1_rows_sum_to_one():
    model = _small_model()
    ids = torch.randint(1, 31, (2, 20))
    ids[0, :8] = 0
    with torch.no_grad():
        logits, inter = model(ids, return_intermediates=True)
        plain = model(ids)
    b, n, L, h, k, d = 2, 20, 2, 2, 4, 16
    assert logits.shape == (b, 31)
    assert inter.stage1_weights.shape == (b, L, h, k, n)
    assert inter.stage2_weights.shape == (b, L, h, n, k)
    assert inter.slot_ids.shape == (b, k) and inter.gates.shape == (b, k)
    assert inter.query.shape == (b, d) and inter.interest_vectors.shape == (b, L, k, d)
    sums = inter.stage1_weights.sum(-1)
    torch.testing.assert_close(sums, torch.ones_like(sums))
    assert (inter.stage1_weights[0, ..., :8] == 0).all()
    ones = torch.ones(L, h, n, dtype=torch.float64)
    torch.testing.assert_close(inter.stage2_weights.sum(-1)[1], ones)
    torch.testing.assert_close(inter.gates.sum(-1), torch.ones(b, dtype=torch.float64))
    # the last-position fast path gives the same scores as the full causal pass
    torch.testing.assert_close(logits[:, 1:], plain[:, 1:])
    assert torch.isinf(logits[:, 0]).all()


@pytest.mark.parametrize("window,n", [(1, 5), (3, 10), (4, 16), (8, 5)])
def test_local_window_attention_equals_banded_reference(window, n):
    from elastic.models.elastic import local_attention, local_attention_reference

    _, kx, vx, q2, _, valid = _dispatch_inputs(n=n)
    got = local_attention(q2, kx, vx, valid, window)
    want = local_attention_reference(q2, kx, vx, valid, window)
    torch.testing.assert_close(got, want)


def test_local_window_model_is_causal_padding_invariant_and_last_form_agrees():
    model = _small_model(local_window=3)
    seq = torch.tensor([[3, 7, 2, 1, 9, 12, 4, 5, 28]])
    short, long = torch.nn.functional.pad(seq, (3, 0)), torch.nn.functional.pad(seq, (15, 0))
    with torch.no_grad():
        a = model(short)
        full_pass, _ = model(long, return_intermediates=True)
        torch.testing.assert_close(a[:, 1:], model(long)[:, 1:])
        torch.testing.assert_close(a[:, 1:], full_pass[:, 1:])
        changed = long.clone()
        changed[0, -2:] = torch.tensor([11, 13])
        context = torch.tensor([3])  # the query reads the first 3 items: no leak through it
        h1, h2 = model.encode(long, context), model.encode(changed, context)
        torch.testing.assert_close(h1[:, :-2], h2[:, :-2])


def test_streamed_dispatch_with_carried_state_equals_one_pass():
    dq, kx, vx, q2, lg, valid = _dispatch_inputs(n=23)
    whole, _, _ = causal_dispatch(dq, kx, vx, q2, lg, valid, cap=30.0, chunk=4)
    state, outs = None, []
    for s0 in range(0, 23, 7):
        seg = slice(s0, s0 + 7)
        out, _, state = causal_dispatch(dq, kx[:, :, seg], vx[:, :, seg], q2[:, :, seg], lg,
                                        valid[:, seg], cap=30.0, chunk=3, state=state)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 2), whole)


@pytest.mark.parametrize("local_window", [0, 3])
def test_streamed_inference_equals_the_training_time_computation(local_window):
    model = _small_model(max_len=40, stream_segment=8, local_window=local_window,
                         query_window=4, query_pool=2)
    ids = torch.randint(1, 31, (3, 40))
    ids[0, :13] = 0
    with torch.no_grad():
        streamed = model(ids)  # eval + no_grad: streamed segments of 8 tokens (2 windows)
    with torch.enable_grad():
        direct = model(ids)  # grad enabled: the one-pass causal path
    torch.testing.assert_close(streamed[:, 1:], direct[:, 1:].detach())


def test_segment_recompute_training_gives_the_same_loss_and_gradients():
    ids = torch.randint(1, 31, (3, 24))
    ids[0, :5] = 0
    context = torch.tensor([4, 6, 9])
    grads = []
    for recompute in (False, True):
        model = _small_model(recompute=recompute, stream_segment=7, local_window=3)
        loss = model.training_loss(ids[:, :-1], ids[:, 1:], context_len=context)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1], strict=True):
        torch.testing.assert_close(a, b)
