"""ELASTIC model: fast paths equal naive references, retrieval is exact, nothing leaks."""

import math

import pytest
import torch

from elastic.models import ElasticConfig, ElasticModel, Intervention, memory_usage
from elastic.models.elastic import (
    ProductKeyMemory,
    causal_dispatch,
    softcap,
    stage1_weights,
    take_prefix,
)
from elastic.models.reference import causal_dispatch_reference, full_dispatch_reference


def _dispatch_inputs(b=2, h=2, k=3, n=11, dh=4, scale=1.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    dq, kx, vx, q2 = (
        (torch.randn(b, h, m, dh, generator=g, dtype=dtype) * scale).requires_grad_()
        for m in (k, n, n, n)
    )
    log_gates = torch.randn(b, k, generator=g, dtype=dtype).log_softmax(-1)
    valid = torch.ones(b, n, dtype=torch.bool)
    valid[0, :4] = False  # left padding in the first sequence
    sink_logit = (torch.randn(b, h, k, generator=g, dtype=dtype) * scale).requires_grad_()
    sink_value = torch.randn(b, h, k, dh, generator=g, dtype=dtype).requires_grad_()
    return dq, kx, vx, q2, log_gates, valid, sink_logit, sink_value


def _causal(dq, kx, vx, q2, lg, valid, sink_logit, sink_value, cap=30.0, chunk=4):
    """The fast kernel from a history's start: the state is the sink alone. The sink's logit
    is capped like every stage-1 logit (the layer does it), and so are the references'."""
    capped = softcap(sink_logit, cap)
    sink = torch.exp(capped - capped.detach())  # 1, with the sink logit's gradient
    return causal_dispatch(dq, kx, vx, q2, lg, valid, cap, chunk, capped.detach(),
                           sink.unsqueeze(-1) * sink_value, sink)


@pytest.mark.parametrize("chunk", [1, 3, 4, 64])
@pytest.mark.parametrize("n", [1, 7, 16])
def test_causal_dispatch_equals_naive_reference_forward_and_backward(chunk, n):
    args = _dispatch_inputs(n=n)
    dq, kx, vx, q2, lg, valid, sink_logit, sink_value = args
    out, logits2, _, _ = _causal(*args, chunk=chunk)
    ref, ref_w2 = causal_dispatch_reference(dq, kx, vx, q2, lg, valid, 30.0,
                                            sink=(softcap(sink_logit, 30.0), sink_value))
    torch.testing.assert_close(out, ref)  # pads too: before any token, the sink alone
    torch.testing.assert_close(logits2.softmax(-1), ref_w2)  # the kernel returns the logits
    leaves = (dq, kx, vx, q2, sink_logit, sink_value)
    upstream = torch.randn_like(out)
    grads = torch.autograd.grad((out * upstream).sum(), leaves)
    ref_grads = torch.autograd.grad((ref * upstream).sum(), leaves)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r)


def _forward_and_grads(inputs, cap, dtype, naive: bool):
    leaves = [t.detach().to(dtype).requires_grad_() if t.is_floating_point() else t
              for t in inputs]
    dq, kx, vx, q2, lg, valid, sink_logit, sink_value = leaves
    if naive:
        out, _ = causal_dispatch_reference(dq, kx, vx, q2, lg, valid, cap,
                                           sink=(softcap(sink_logit, cap), sink_value))
    else:
        out, _, _, _ = _causal(*leaves, cap=cap, chunk=8)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1),
                           dtype=torch.float64).to(dtype)
    wrt = (dq, kx, vx, q2, sink_logit, sink_value)
    return [out.double()] + [g.double() for g in torch.autograd.grad((out * upstream).sum(), wrt)]


@pytest.mark.parametrize("scale", [1.0, 3.0, 40.0, 1e4])
@pytest.mark.parametrize("cap", [5.0, 15.0, 20.0])
def test_causal_dispatch_float32_forward_and_backward_as_accurate_as_naive_float32(scale, cap):
    """The dtype that ships: the float32 kernel's output and gradients (w.r.t. queries, keys,
    values, sink) against float64, held to the error of the naive float32 softmax, for logits
    from ±1 to far beyond the cap (raw ±10⁵, where the old kernel overflowed in backward)."""
    inputs = _dispatch_inputs(n=40, scale=scale)
    exact = _forward_and_grads(inputs, cap, torch.float64, naive=True)
    naive32 = _forward_and_grads(inputs, cap, torch.float32, naive=True)
    fast32 = _forward_and_grads(inputs, cap, torch.float32, naive=False)
    for fast, naive, want in zip(fast32, naive32, exact, strict=True):
        assert torch.isfinite(fast).all()
        size = float(want.detach().abs().max())
        naive_error = float((naive - want).detach().abs().max())
        # a cap of 30 failed this (2 % error in the stage-1 query gradients)
        assert float((fast - want).detach().abs().max()) <= max(10 * naive_error, 1e-4 * size)


@pytest.mark.parametrize("cap", [0.0, -1.0, 20.5, 100.0])
def test_a_softcap_outside_the_float32_range_is_refused(cap):
    with pytest.raises(ValueError, match="stage1_softcap"):
        ElasticConfig(stage1_softcap=cap)


def test_first_real_tokens_far_below_the_cap_keep_gradients_finite_in_float32():
    """The review's case: dispatcher logits near −cap on the first real tokens (raw −16 and
    lower) gave inf gradients for the stage-1 queries and keys."""
    dq, kx, vx, q2, lg, valid, sink_logit, sink_value = (
        t.detach().float() if t.is_floating_point() else t for t in _dispatch_inputs(n=24)
    )
    kx = kx.clone()
    kx[:, :, :12] = -dq.mean(2, keepdim=True) * 40.0  # logits ~ −cap on the first tokens
    leaves = [t.requires_grad_() for t in (dq, kx, vx, q2)]
    out, _, _, _ = _causal(*leaves, lg, valid, sink_logit, sink_value, chunk=8)
    grads = torch.autograd.grad(out.square().sum(), leaves)
    assert all(torch.isfinite(g).all() for g in grads)


def test_full_dispatch_reference_agrees_with_the_causal_reference_at_the_last_position():
    dq, kx, vx, q2, lg, valid, sink_logit, sink_value = _dispatch_inputs(n=9)
    full = full_dispatch_reference(dq, kx, vx, q2[:, :, -1:], lg, valid, 30.0,
                                   sink=(softcap(sink_logit, 30.0), sink_value))
    causal, _ = causal_dispatch_reference(dq, kx, vx, q2, lg, valid, 30.0,
                                          sink=(softcap(sink_logit, 30.0), sink_value))
    torch.testing.assert_close(full, causal[:, :, -1:])


def test_stage1_weights_sum_to_one_with_the_sink_and_skip_padding():
    dq, kx, _, _, _, valid, sink_logit, _ = _dispatch_inputs(n=9)
    w1, sink = stage1_weights(dq, kx, valid, 30.0, softcap(sink_logit, 30.0))
    total = w1.sum(-1) + sink
    torch.testing.assert_close(total, torch.ones_like(total))
    assert (w1[0, ..., :4] == 0).all() and (sink > 0).all()


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


@pytest.mark.parametrize("t", [9, 15, 22])
def test_the_training_loss_itself_ignores_items_after_t(t):
    """The loss, not only `encode`: with targets kept at positions <= t, perturbing every input
    after t leaves the loss unchanged (the balance term included: its query reads c <= t)."""
    model = _small_model(max_len=24, balance_weight=0.5).train()
    model.embedding.dropout.p = 0.0
    g = torch.Generator().manual_seed(t)
    ids = torch.randint(1, 31, (3, 25), generator=g)
    ids[1, :6] = 0
    inputs, targets = ids[:, :-1], ids[:, 1:].clone()
    targets[:, t + 1 :] = 0  # the loss terms at positions <= t only
    perturbed = inputs.clone()
    perturbed[:, t + 1 :] = torch.randint(1, 31, perturbed[:, t + 1 :].shape, generator=g)
    context = torch.tensor([5, 3, 8])
    a = model.training_loss(inputs, targets, context_len=context)
    b = model.training_loss(perturbed, targets, context_len=context)
    torch.testing.assert_close(a, b)
    c = model.training_loss(inputs, ids[:, 1:], context_len=context)  # later targets count
    assert not torch.isclose(a, c)


def test_balance_term_enters_the_training_loss_with_its_weight():
    ids = torch.randint(1, 31, (4, 24))
    context = torch.tensor([3, 5, 7, 9])
    losses = {}
    for weight in (0.0, 2.0):
        model = _small_model(balance_weight=weight).train()
        model.embedding.dropout.p = 0.0
        losses[weight] = model.training_loss(ids[:, :-1], ids[:, 1:], context_len=context)
        retrieval, _ = model.retrieve(ids[:, :-1], Intervention(query_context=context))
    torch.testing.assert_close(losses[2.0] - losses[0.0], 2.0 * retrieval.balance_loss)


def test_balance_is_one_when_uniform_and_grows_when_one_slot_takes_all():
    memory = ProductKeyMemory(ElasticConfig(d_model=8, num_heads=2, num_slots=16,
                                            num_interests=4))
    uniform_scores = torch.zeros(16, 2, 4)  # every sub-key equally likely
    every_slot = torch.arange(16).view(4, 4).repeat(4, 1)  # each slot picked equally often
    assert float(memory.balance(uniform_scores, every_slot)) == pytest.approx(1.0)
    peaked = torch.full((16, 2, 4), -20.0)
    peaked[:, :, 0] = 20.0  # everyone prefers slot 0
    one_slot = torch.zeros(16, 4, dtype=torch.long)
    assert float(memory.balance(peaked, one_slot)) == pytest.approx(16.0, rel=1e-3)


@pytest.mark.parametrize("bad", [dict(num_interests=8, subkey_topk=2), dict(num_interests=0),
                                 dict(d_model=0), dict(num_layers=0), dict(max_len=-5),
                                 dict(num_slots=15), dict(context_max_frac=1.5),
                                 dict(stage1_scale=-1.0), dict(stage1_scale=math.inf)])
def test_invalid_settings_are_refused_with_a_sentence(bad):
    with pytest.raises(ValueError, match=next(iter(bad)) if "topk" not in str(bad) else "k'"):
        ElasticConfig(**bad)


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
    sums = inter.stage1_weights.sum(-1) + inter.stage1_sink  # the sink keeps the rest
    torch.testing.assert_close(sums, torch.ones_like(sums))
    assert (inter.stage1_sink > 0).all()
    assert (inter.stage1_weights[0, ..., :8] == 0).all()
    ones = torch.ones(L, h, n, dtype=torch.float64)
    torch.testing.assert_close(inter.stage2_weights.sum(-1)[1], ones)
    torch.testing.assert_close(inter.gates.sum(-1), torch.ones(b, dtype=torch.float64))
    # the logits are what each softmax reads: stage 1 over [sink, tokens], stage 2 over k
    assert inter.stage1_logits.shape == (b, L, h, k, n)
    assert inter.stage1_sink_logits.shape == (b, L, h, k)
    assert inter.stage2_logits.shape == (b, L, h, n, k)
    assert torch.isneginf(inter.stage1_logits[0, ..., :8]).all()
    real = inter.stage1_logits[1]
    assert (real.abs() < model.config.stage1_softcap).all()  # capped
    both = torch.cat([inter.stage1_sink_logits[..., None], inter.stage1_logits], -1).softmax(-1)
    torch.testing.assert_close(both[..., 1:], inter.stage1_weights)
    torch.testing.assert_close(both[..., 0], inter.stage1_sink)
    torch.testing.assert_close(inter.stage2_logits.softmax(-1), inter.stage2_weights)
    # the stage-2 logits carry the gates' log-prior: knocking out D2 makes its logit -inf
    with torch.no_grad():
        _, out = model(ids, return_intermediates=True, intervention=Intervention(knockout=(1,)))
    assert torch.isneginf(out.stage2_logits[..., 1]).all()
    assert torch.isfinite(out.stage2_logits[..., [0, 2, 3]]).all()
    # the last-position fast path gives the same scores as the full causal pass
    torch.testing.assert_close(logits[:, 1:], plain[:, 1:])
    assert torch.isinf(logits[:, 0]).all()


@pytest.mark.parametrize("window,n", [(1, 5), (3, 10), (4, 16), (8, 5)])
def test_local_window_attention_equals_banded_reference(window, n):
    from elastic.models.elastic import local_attention
    from elastic.models.reference import local_attention_reference

    _, kx, vx, q2, _, valid, _, _ = _dispatch_inputs(n=n)
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
    dq, kx, vx, q2, lg, valid, sink_logit, sink_value = _dispatch_inputs(n=23)
    capped = softcap(sink_logit, 30.0)
    whole, _, _, _ = _causal(dq, kx, vx, q2, lg, valid, sink_logit, sink_value)
    num, den, outs = sink_value, torch.ones_like(sink_logit), []
    for s0 in range(0, 23, 7):
        seg = slice(s0, s0 + 7)
        out, _, num, den = causal_dispatch(dq, kx[:, :, seg], vx[:, :, seg], q2[:, :, seg], lg,
                                           valid[:, seg], 30.0, 3, capped, num, den)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 2), whole)


@pytest.mark.parametrize("local_window", [0, 3])
@pytest.mark.parametrize("segment", [5, 8, 40])
@pytest.mark.parametrize("stage1_scale", [0.0, 10.0])
def test_last_position_forward_equals_the_causal_encoding_for_any_segment(local_window, segment,
                                                                           stage1_scale):
    """One code path: the layers run segment by segment from the sinks' state; the last
    layer's `last` (inference) equals the causal encoding's last position (training), with
    the dot-product and the cosine stage 1."""
    model = _small_model(max_len=40, stream_segment=segment, local_window=local_window,
                         stage1_scale=stage1_scale)
    one_pass = _small_model(max_len=40, stream_segment=40, local_window=local_window,
                            stage1_scale=stage1_scale)
    ids = torch.randint(1, 31, (3, 40))
    ids[0, :13] = 0
    with torch.no_grad():
        logits = model(ids)
        hidden = one_pass.encode(ids)
    torch.testing.assert_close(logits[:, 1:], one_pass.scores(hidden[:, -1])[:, 1:])


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


def test_cosine_stage1_is_the_learned_scale_times_the_cosine_of_dispatcher_and_token():
    """stage1_scale = s: a dispatcher's stage-1 logit on a token is s_h·cos(query, key), on
    itself (the sink) s_h·cos(query, own key), then the softcap; weights are their softmax."""
    model = _small_model(max_len=12, stage1_scale=4.0, stage1_softcap=20.0).double()
    layer = model.layers[0]
    with torch.no_grad():
        layer.s1_scale.copy_(torch.tensor([3.0, 7.0], dtype=torch.float64))
    ids = torch.randint(1, 31, (2, 12))
    ids[0, :5] = 0
    x, valid = model.embedding(ids), ids != 0
    retrieval, _ = model.retrieve(ids)
    terms = layer.prepare(retrieval.dispatchers, retrieval.log_gates)
    w1, sink, _, model_logits = layer.maps(x, terms, valid)
    dq = layer._heads(layer.dispatcher_q(retrieval.dispatchers))  # (B,h,k,dh), raw
    kx, _, _ = layer._tokens(x)
    kd, _, _ = layer._tokens(retrieval.dispatchers)
    scale = layer.s1_scale[None, :, None, None]
    cos_tokens = torch.nn.functional.normalize(dq, dim=-1) @ \
        torch.nn.functional.normalize(kx, dim=-1).transpose(-2, -1)  # (B,h,k,N)
    cos_sink = torch.nn.functional.cosine_similarity(dq, kd, dim=-1)  # (B,h,k)
    logits = softcap(torch.cat([scale[..., 0, None] * cos_sink[..., None],
                                scale * cos_tokens], -1), 20.0)
    logits[..., 1:] = logits[..., 1:].masked_fill(~valid[:, None, None, :], -math.inf)
    expected = logits.softmax(-1)
    torch.testing.assert_close(sink, expected[..., 0])
    torch.testing.assert_close(w1, expected[..., 1:])
    real = valid[:, None, None, :].expand_as(cos_tokens)
    torch.testing.assert_close(model_logits[real], logits[..., 1:][real])
    assert (model_logits[real].abs() <= 7.0).all()  # within the largest head scale, s = 7
