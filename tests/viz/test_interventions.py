"""One user's pass as trained and under an intervention: lists, ranks and maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from elastic.data import pad_left
from elastic.evaluate import target_ranks
from elastic.models import Intervention, build_model
from elastic.viz import analysis
from elastic.viz import interventions as iv

USER = 5


def _user(data, model, user=USER):
    history, held_out = analysis.user_history(data, user)
    return history, held_out, torch.from_numpy(pad_left([history], model.config.max_len))


def test_the_original_pass_is_the_plain_forward_ranked_as_the_evaluator_ranks(data, model):
    history, held_out, ids = _user(data, model)
    c = iv.compare(model, ids, held_out, seen=history)
    with torch.no_grad():
        plain = model(ids)
    np.testing.assert_allclose(c.before.scores[1:], plain[0, 1:].numpy(), rtol=1e-5, atol=1e-5)
    seen = torch.from_numpy(np.unique(history))
    expected = target_ranks(plain, torch.tensor([held_out]), torch.zeros_like(seen), seen)
    assert c.before.target_rank == int(expected[0])
    assert c.before.top_items.tolist() == analysis.top_items(plain[0].numpy(), history).tolist()
    assert not np.isin(c.before.top_items, history).any()
    k, n = model.config.num_interests, min(len(history), model.config.max_len)
    assert c.before.stage1.shape == (2, 2, k, n) and c.before.stage2.shape == (2, 2, n, k)


def test_an_identity_intervention_leaves_the_list_and_the_ranks_unchanged(data, model):
    history, held_out, ids = _user(data, model)
    for identity in (None, Intervention(), Intervention(donor_ids=ids)):
        c = iv.compare(model, ids, held_out, identity, seen=history)
        assert c.same_order and c.entered.size == 0 and c.left.size == 0
        assert c.after.target_rank == c.before.target_rank
        assert c.before_top_now.tolist() == list(range(1, 11))
        assert c.after_top_was.tolist() == list(range(1, 11))
        np.testing.assert_allclose(c.after.scores[1:], c.before.scores[1:], atol=1e-6)
        np.testing.assert_allclose(c.after.stage1, c.before.stage1, atol=1e-6)
        np.testing.assert_allclose(c.after.stage2, c.before.stage2, atol=1e-6)
    sentence = iv.verdict(c, "with this user's own experts", "nothing here drives it")
    assert "the top-10 is unchanged" in sentence
    assert f"stays at rank {c.before.target_rank}" in sentence
    assert sentence.endswith("Nothing here drives it.")


def test_knocking_out_every_dispatcher_is_the_dispatcher_branch_off(data, model):
    history, held_out, ids = _user(data, model)
    k = model.config.num_interests
    everyone = iv.compare(model, ids, held_out, Intervention(knockout=tuple(range(k))),
                          seen=history)
    off = iv.compare(model, ids, held_out, Intervention(dispatch=False), seen=history)
    assert np.isfinite(everyone.after.scores[1:]).all()
    np.testing.assert_allclose(everyone.after.scores[1:], off.after.scores[1:], atol=1e-6)
    assert everyone.after.top_items.tolist() == off.after.top_items.tolist()
    assert everyone.after.target_rank == off.after.target_rank
    assert not np.allclose(off.after.scores[1:], off.before.scores[1:], atol=1e-4)


def test_a_knocked_out_dispatcher_gets_no_stage_two_weight(data, model):
    history, held_out, ids = _user(data, model)
    c = iv.compare(model, ids, held_out, Intervention(knockout=(2,)), seen=history)
    assert np.all(c.after.stage2[..., 2] == 0)
    np.testing.assert_allclose(c.after.stage2.sum(-1), 1.0, atol=1e-5)
    assert c.before.stage2[..., 2].max() > 0
    with pytest.raises(ValueError, match="outside"):
        iv.compare(model, ids, held_out, Intervention(knockout=(9,)))


def test_another_users_experts_are_the_ones_that_user_retrieves(data, model):
    history, held_out, ids = _user(data, model)
    _, _, donor_ids = _user(data, model, user=iv.donor_of(USER, len(data.sequences)))
    c = iv.compare(model, ids, held_out, Intervention(donor_ids=donor_ids), seen=history)
    with torch.no_grad():
        donor_slots = model.retrieve(donor_ids)[0].slot_ids[0].numpy()
        own_slots = model.retrieve(ids)[0].slot_ids[0].numpy()
    assert c.after.slot_ids.tolist() == donor_slots.tolist()
    assert c.before.slot_ids.tolist() == own_slots.tolist()
    assert set(donor_slots) != set(own_slots)
    assert c.after.history.tolist() == c.before.history.tolist()  # the user's history is read
    assert not np.allclose(c.after.scores[1:], c.before.scores[1:], atol=1e-5)


def test_a_removed_item_is_a_candidate_again_and_the_pass_reads_the_edited_history(data, model):
    history, held_out, ids = _user(data, model)
    removed = [int(history[-1]), int(history[-3])]
    changed_ids, changed_seen = iv.edited_history(history, model.config.max_len, remove=removed)
    c = iv.compare(model, ids, held_out, None, changed_ids, history, changed_seen)
    kept = history[~np.isin(history, removed)]
    assert c.after.history.tolist() == kept[-model.config.max_len:].tolist()
    with torch.no_grad():
        edited = model(changed_ids)[0].numpy()
    np.testing.assert_allclose(c.after.scores[1:], edited[1:], rtol=1e-5, atol=1e-5)
    assert iv.ranks_of(c.before.scores, removed, c.before.seen).tolist() == [0, 0]  # filtered
    assert (iv.ranks_of(c.after.scores, removed, c.after.seen) >= 1).all()  # ranked now
    assert c.after.target_rank == analysis.rank_of(c.after.scores, held_out, kept)


def test_the_held_out_item_in_the_history_is_still_ranked_and_removing_it_restores(data, model):
    history, held_out, ids = _user(data, model)
    with_target, seen = iv.edited_history(history, model.config.max_len, append=[held_out])
    c = iv.compare(model, ids, held_out, None, with_target, history, seen)
    assert held_out in c.after.seen and held_out not in c.before.seen
    assert c.after.target_rank >= 1  # the evaluator never filters the target
    assert held_out not in c.after.top_items  # ... but it is no recommendation
    restored, restored_seen = iv.edited_history(
        np.append(history, held_out), model.config.max_len, remove=[held_out]
    )
    back = iv.compare(model, ids, held_out, None, restored, history, restored_seen)
    assert back.same_order and back.after.target_rank == back.before.target_rank


def test_each_knockout_effect_is_that_knockouts_comparison(data, model):
    history, held_out, ids = _user(data, model)
    effects = iv.knockout_effects(model, ids, held_out, seen=history)
    k = model.config.num_interests
    assert effects.score_change.shape == effects.rank_after.shape == (10, k)
    for j in range(k):
        c = iv.compare(model, ids, held_out, Intervention(knockout=(j,)), seen=history)
        assert effects.items.tolist() == c.before.top_items.tolist()
        np.testing.assert_allclose(
            effects.score_change[:, j],
            c.after.scores[effects.items] - c.before.scores[effects.items],
            atol=1e-5,
        )
        assert effects.rank_after[:, j].tolist() == c.before_top_now.tolist()
        assert effects.replaced[j] == c.left.size
        assert effects.target_rank_after[j] == c.after.target_rank
    sentence = iv.knockout_verdict(effects)
    if effects.replaced.any():
        j = int(np.flatnonzero(effects.replaced)[0])
        assert f"D{j + 1} replaces {effects.replaced[j]}" in sentence
    else:
        assert "no single dispatcher drives the list" in sentence


def test_sasrec_is_refused_with_a_sentence(data):
    torch.manual_seed(0)
    sasrec = build_model("sasrec", num_items=data.num_items, max_len=16, d_model=16).eval()
    ids = torch.from_numpy(pad_left([data.sequences[0][:-1]], 16))
    for call in (
        lambda: iv.compare(sasrec, ids, 1, Intervention(knockout=(0,))),
        lambda: iv.knockout_effects(sasrec, ids),
        lambda: iv.run_experiment(sasrec, data, 0, iv.Experiment("off")),
    ):
        with pytest.raises(ValueError, match="SASRec has no dispatchers"):
            call()


def test_an_empty_history_is_refused(data, model):
    history, _ = analysis.user_history(data, USER)
    with pytest.raises(ValueError, match="The edited history holds no item"):
        iv.run_experiment(model, data, USER, iv.Experiment("remove", remove=tuple(history)))


@pytest.mark.parametrize("kind", iv.EXPERIMENTS)
def test_every_experiment_runs_and_says_what_it_changed(data, model, kind):
    experiment = iv.Experiment(kind, dispatcher=1, donor=3, seed=4,
                               remove=tuple(int(i) for i in data.sequences[USER][-4:-1]),
                               interest=1, count=3)
    c = iv.run_experiment(model, data, USER, experiment)
    _, held_out = analysis.user_history(data, USER)
    assert c.before.target_rank is not None and c.after.target_rank is not None
    phrase = iv.experiment_phrase(experiment, data)
    sentence = iv.verdict(c, phrase, iv.unchanged_meaning(experiment))
    assert sentence.startswith(phrase[:1].upper() + phrase[1:])
    if c.same_order:
        assert "unchanged" in sentence
    elif c.entered.size:
        verb = "is" if c.entered.size == 1 else "are"
        assert f"{c.entered.size} of the top-10 items {verb} replaced" in sentence
    else:
        assert "different order" in sentence
    if kind == "random":
        expected = iv.random_slots(model.config.num_slots, model.config.num_interests, 4)
        assert c.after.slot_ids.tolist() == expected[0].tolist()
    if kind == "plant":
        appended = c.after.history[-3:]
        assert (data.truth.item_interest[appended] == 1).all()
        assert not np.isin(appended, c.before.seen).any() and held_out not in appended
        assert np.isin(appended, c.after.seen).all()  # the edited user has consumed them


def test_planted_items_are_the_most_consumed_of_the_interest(data):
    items = iv.planted_items(data, 2, 4, exclude=[])
    consumed = np.bincount(np.concatenate([s[:-1] for s in data.sequences]),
                           minlength=data.num_items + 1)
    assert (data.truth.item_interest[items] == 2).all()
    members = np.flatnonzero(data.truth.item_interest == 2)
    assert consumed[items].tolist() == sorted(consumed[members], reverse=True)[:4]
    assert items[0] not in iv.planted_items(data, 2, 4, exclude=[items[0]])


def _record(donor: float, window: float, branch: float = -0.015) -> dict:
    def row(name, change, runs=1):
        return {"name": name, "runs": runs,
                "metrics": {"NDCG@10": 0.2 * (1 + change), "HR@10": 0.4},
                "change": {"NDCG@10": change, "HR@10": 0.0}}

    return {
        "date": "2026-12-02T11:16:41+00:00", "commit": "abc1234",
        "machine": {"cpu": "AMD EPYC", "torch": "2.13.0+cpu"},
        "checkpoint": "assets/demo/elastic", "dataset": {"users": 1000},
        "ablation": [row("as trained", 0.0), row("another user's experts", donor),
                     row("random slots", 0.001), row("one dispatcher out", 0.005, runs=8),
                     row("dispatchers off (local window only)", branch),
                     row("local window off", window)],
    }


def test_the_measured_ablation_is_read_with_its_source_and_what_it_says():
    record = _record(donor=0.0, window=-0.133)
    rows = iv.ablation_rows(record)
    assert [r["intervention"] for r in rows][3] == "one dispatcher out (mean of 8)"
    assert rows[5]["Δ NDCG@10"] == "-13.3%"
    source = iv.ablation_source(record)
    assert "2026-12-02" in source and "abc1234" in source and "1,000 users" in source
    sentence = iv.ablation_verdict(record)
    assert sentence.startswith("Local window off (-13.3%) moves test NDCG@10 by more than 2%")
    assert "another user's experts (+0.0%)" in sentence and "nearly inert" in sentence
    assert "dispatchers off (-1.5%)" in sentence  # the row's own parenthesis left out
    driving = iv.ablation_verdict(_record(donor=0.0, window=-0.133, branch=-0.475))
    assert "nearly inert" not in driving
    assert "The dispatchers drive the list, but which memory slots" in driving
    mattering = iv.ablation_verdict(_record(donor=-0.10, window=-0.133))
    assert "nearly inert" not in mattering
    assert mattering.startswith("Another user's experts (-10.0%), local window off (-13.3%) "
                                "move test NDCG@10")


def test_the_memory_page_says_whether_the_retrieved_slots_matter():
    inert = iv.slot_verdict(_record(donor=-0.012, window=-0.4, branch=-0.475))
    assert inert.startswith("**Which slots a user retrieves barely changes")
    assert "another user's experts -1.2%, random slots +0.1%" in inert and "1,000 users" in inert
    driving = iv.slot_verdict(_record(donor=-0.30, window=-0.4))
    assert driving.startswith("**The retrieved slots drive the recommendations**")
    assert iv.slot_verdict({"ablation": [], "dataset": {"users": 1}}) == ""
