"""Interventions change exactly what they name; the ablation harness reports them."""

import pytest
import torch

from elastic.ablation import ablation_table, format_table
from elastic.data import EvalLoader, SyntheticConfig, leave_one_out, make_synthetic
from elastic.models import ElasticConfig, ElasticModel, Intervention


def _model(**kw) -> ElasticModel:
    torch.manual_seed(0)
    cfg = dict(num_items=40, max_len=16, d_model=16, num_heads=2, num_interests=4,
               num_slots=16, query_window=4, query_pool=2, chunk_size=4, dropout=0.0)
    cfg.update(kw)
    return ElasticModel(ElasticConfig(**cfg)).eval()


def _history(b=3, n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 41, (b, n), generator=g)
    ids[0, :5] = 0  # left padding
    return ids


@torch.no_grad()
def test_null_interventions_change_nothing():
    model, ids = _model(), _history()
    plain, inter = model(ids, return_intermediates=True)
    own = [Intervention(), Intervention(donor_ids=ids), Intervention(slot_ids=inter.slot_ids)]
    for change in own:
        torch.testing.assert_close(model(ids, intervention=change), plain)


@torch.no_grad()
def test_each_intervention_changes_the_scores():
    model, ids = _model(), _history()
    plain = model(ids)
    donors = ids.roll(1, dims=0)
    slots = torch.tensor([[0, 1, 2, 3]] * 3)
    for change in (Intervention(knockout=(0,)), Intervention(donor_ids=donors),
                   Intervention(slot_ids=slots), Intervention(dispatch=False),
                   Intervention(local_window=False)):
        assert not torch.allclose(model(ids, intervention=change), plain), change


@torch.no_grad()
def test_knockout_removes_the_dispatcher_from_stage_two():
    model, ids = _model(), _history()
    _, inter = model(ids, return_intermediates=True, intervention=Intervention(knockout=(1, 2)))
    stage2 = inter.stage2_weights  # (B, L, h, N, k)
    assert (stage2[..., [1, 2]] == 0).all()
    torch.testing.assert_close(stage2[:, :, :, -1].sum(-1), torch.ones_like(stage2[:, :, :, -1, 0]))


@torch.no_grad()
def test_knocking_out_every_dispatcher_is_the_branch_removed_not_nan():
    model, ids = _model(), _history()
    every = Intervention(knockout=(0, 1, 2, 3))
    off = model(ids, intervention=Intervention(dispatch=False))
    scores = model(ids, intervention=every)
    assert torch.isfinite(scores[:, 1:]).all()
    torch.testing.assert_close(scores, off)
    torch.testing.assert_close(model.encode(ids, intervention=every),
                               model.encode(ids, intervention=Intervention(dispatch=False)))


@torch.no_grad()
def test_both_branches_off_leaves_only_embedding_and_feed_forward():
    model, ids = _model(), _history()
    off = model(ids, intervention=Intervention(dispatch=False, local_window=False))
    x = model.embedding(ids)
    for layer in model.layers:  # what is left of the attention output is its bias
        x = x + layer.proj.bias
        x = x + layer.ffn(layer.norm2(x))
    torch.testing.assert_close(off, model.scores(model.final_norm(x)[:, -1]))


def test_ablation_table_rows_and_relative_change():
    data = make_synthetic(SyntheticConfig(num_users=40, num_items=60, planted_interests=3,
                                          min_seq_len=10, max_seq_len=20))
    model = _model(num_items=60)
    loader = EvalLoader(leave_one_out(data), "test", 16, batch_size=16)
    rows = ablation_table(model, loader)
    names = [row.name for row in rows]
    assert names[0] == "as trained" and "another user's experts" in names
    assert rows[0].change["NDCG@10"] == 0.0
    knock = next(row for row in rows if row.name == "one dispatcher out")
    assert knock.runs == 4
    for row in rows:
        base = rows[0].metrics["NDCG@10"]
        assert row.change["NDCG@10"] == pytest.approx((row.metrics["NDCG@10"] - base) / base)
    assert "| as trained |" in format_table(rows)
