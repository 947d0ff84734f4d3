"""Full-ranking metrics against hand-computed values; popularity; interest recovery."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from elastic.data import (
    EvalLoader,
    InteractionData,
    SyntheticConfig,
    leave_one_out,
    make_synthetic,
)
from elastic.evaluate import (
    PopularityScorer,
    chunked_target_ranks,
    evaluate,
    interest_recovery,
    metrics_from_ranks,
    target_ranks,
    top_k_items,
)
from elastic.models import build_model

NEG = float("-inf")


def _dataset(sequences, num_items):
    return InteractionData(
        name="tiny",
        sequences=[np.array(s) for s in sequences],
        num_items=num_items,
        user_ids=list(range(len(sequences))),
        item_ids=[None, *range(1, num_items + 1)],
    )


def _scores_with_target_at_rank(rank, num_items=30, target=5):
    """Scores (|I|+1,) where exactly rank-1 items beat `target`."""
    scores = torch.zeros(num_items + 1)
    scores[0] = NEG
    others = [i for i in range(1, num_items + 1) if i != target]
    scores[target] = 0.5
    for i in others[: rank - 1]:
        scores[i] = 1.0
    return scores


def test_ranks_1st_3rd_15th_give_hand_computed_metrics():
    scores = torch.stack([_scores_with_target_at_rank(r) for r in (1, 3, 15)])
    ranks = target_ranks(scores, torch.tensor([5, 5, 5]))
    assert ranks.tolist() == [1, 3, 15]
    metrics = metrics_from_ranks(ranks)
    expected = {
        "HR@10": 2 / 3,
        "HR@20": 1.0,
        "NDCG@10": (1 + 1 / math.log2(4) + 0) / 3,  # = 0.5
        "NDCG@20": (1 + 0.5 + 1 / math.log2(16)) / 3,  # rank 15 gives 0.25
        "MRR": (1 + 1 / 3 + 1 / 15) / 3,
    }
    assert metrics == pytest.approx(expected)
    assert metrics["NDCG@10"] == pytest.approx(0.5)


def test_filtered_history_moves_the_target_up():
    scores = _scores_with_target_at_rank(3).unsqueeze(0)  # items 1 and 2 beat target 5
    assert target_ranks(scores, torch.tensor([5])).item() == 3
    seen_rows, seen_items = torch.tensor([0, 0]), torch.tensor([1, 2])
    assert target_ranks(scores, torch.tensor([5]), seen_rows, seen_items).item() == 1
    seen_rows, seen_items = torch.tensor([0]), torch.tensor([2])
    assert target_ranks(scores, torch.tensor([5]), seen_rows, seen_items).item() == 2


def test_ties_count_for_the_target_and_padding_is_never_a_candidate():
    scores = torch.tensor([[100.0, 0.3, 0.3, 0.3, 0.9]])  # padding column "scores" highest
    assert target_ranks(scores, torch.tensor([2])).item() == 2  # only item 4 is strictly above


def test_a_repeated_target_stays_a_candidate():
    scores = _scores_with_target_at_rank(2).unsqueeze(0)
    rank = target_ranks(scores, torch.tensor([5]), torch.tensor([0]), torch.tensor([5]))
    assert rank.item() == 2


def test_nan_scores_never_help():
    scores = torch.zeros(1, 11)
    scores[0, 3] = float("nan")
    assert target_ranks(scores, torch.tensor([3])).item() == 10  # last of the 10 items
    scores = torch.full((1, 11), float("nan"))
    assert target_ranks(scores, torch.tensor([3])).item() == 10


class _ById(nn.Module):
    """Scores item i as -i (item 1 best) and remembers the mode it was called in."""

    def __init__(self, num_items):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.num_items = num_items
        self.modes = []

    def forward(self, history_ids):
        self.modes.append(self.training)
        scores = -torch.arange(self.num_items + 1, dtype=torch.float32)
        return scores.expand(history_ids.shape[0], -1).clone()


def test_evaluate_filters_each_users_history_end_to_end():
    # user A: valid 2 after [5, 1] -> rank 1; test 3 after [5, 1, 2] -> rank 1 (1, 2 filtered)
    # user B: valid 3 after [1, 2] -> rank 1; test 20 after [1, 2, 3] -> 1 + 16 = rank 17
    split = leave_one_out(_dataset([[5, 1, 2, 3], [1, 2, 3, 20]], num_items=30))
    scorer = _ById(30)
    scorer.train()
    test = evaluate(scorer, EvalLoader(split, "test", max_len=4, batch_size=1))
    assert test["users"] == 2
    assert test == pytest.approx(
        {
            "HR@10": 0.5,
            "HR@20": 1.0,
            "NDCG@10": 0.5,
            "NDCG@20": (1 + 1 / math.log2(18)) / 2,
            "MRR": (1 + 1 / 17) / 2,
            "users": 2,
        }
    )
    valid = evaluate(scorer, EvalLoader(split, "valid", max_len=4))
    assert valid["MRR"] == 1.0
    assert scorer.modes == [False, False, False] and scorer.training  # eval inside, restored


def test_popularity_counts_training_items_and_breaks_ties():
    # train parts: [1, 2, 2], [2, 3, 1], [4] -> counts 1:2, 2:3, 3:1, 4:1, 5:0
    split = leave_one_out(_dataset([[1, 2, 2, 5, 3], [2, 3, 1, 4, 5], [4, 1, 2]], num_items=5))
    scorer = PopularityScorer(split)
    scores = scorer(torch.zeros(2, 3, dtype=torch.long))
    assert scores.shape == (2, 6) and torch.equal(scores[0], scores[1])
    assert scores[0, 0] == NEG
    assert scores[0, 1:].floor().tolist() == [2, 3, 1, 1, 0]
    assert len(set(scores[0, 1:].tolist())) == 5  # no two items tie
    # tests: user 0 target 3 after {1,2,5}: only 4 (count 1) can beat it -> rank 1 or 2
    ranks = target_ranks(
        scores[:1], torch.tensor([3]), torch.tensor([0, 0, 0]), torch.tensor([1, 2, 5])
    )
    assert ranks.item() in (1, 2)
    metrics = evaluate(scorer, EvalLoader(split, "test", max_len=5))
    assert metrics["HR@10"] == 1.0  # five items: every target is in the top 10


def _planted_intermediates(history_ids, item_interest, k):
    """What a perfect model would return: each item on the dispatcher whose slot is its interest,
    the user's dominant interest as top slot."""
    b, n = history_ids.shape
    slot_ids = torch.zeros(b, k, dtype=torch.long)
    stage1 = torch.zeros(b, 1, 1, k, n)
    for row in range(b):
        interests = item_interest[history_ids[row]]
        real = history_ids[row] != 0
        dominant = int(np.bincount(interests[real.numpy()]).argmax())
        order = [dominant] + [g for g in range(k) if g != dominant]
        slot_ids[row] = torch.tensor(order)
        for pos in np.flatnonzero(real.numpy()):
            stage1[row, 0, 0, order.index(int(interests[pos])), pos] = 1.0
    return SimpleNamespace(stage1_weights=stage1, slot_ids=slot_ids)


class _Planted(nn.Module):
    def __init__(self, item_interest, k, max_len, mixed=False):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.item_interest = item_interest
        self.k = k
        self.mixed = mixed  # every dispatcher spreads its weight over the whole history
        self.config = SimpleNamespace(max_len=max_len)

    def forward(self, history_ids, return_intermediates=False):
        logits = torch.zeros(history_ids.shape[0], len(self.item_interest))
        inter = _planted_intermediates(history_ids, self.item_interest, self.k)
        if self.mixed:
            real = (history_ids != 0).float()
            noise = torch.rand(real.shape, generator=torch.Generator().manual_seed(0))
            spread = real + 0.01 * noise
            inter.stage1_weights = (spread * real)[:, None, None, None].expand(
                -1, 1, 1, self.k, -1) / real.sum(-1)[:, None, None, None, None]
        return logits, inter


@pytest.fixture(scope="module")
def tiny_synthetic():
    return make_synthetic(
        SyntheticConfig(
            num_users=40, num_items=80, planted_interests=4, facets=2, interests_per_user=2,
            min_seq_len=12, max_seq_len=30, seed=1
        )
    )


def test_interest_recovery_is_one_for_a_model_that_recovers_the_planted_interests(
    tiny_synthetic,
):
    data = tiny_synthetic
    model = _Planted(data.truth.item_interest, k=4, max_len=32)
    result = interest_recovery(model, data, leave_one_out(data), max_users=25, batch_size=8)
    assert result["users"] == 25
    assert result["dispatcher_nmi"] == pytest.approx(1.0)
    assert result["dispatcher_nmi_per_user"] == pytest.approx(1.0)
    assert result["slot_nmi"] == pytest.approx(1.0)
    assert result["dispatcher_nmi_chance"] < 0.5
    assert result["slot_nmi_chance"] < 1.0
    # every dispatcher with 10 items of its interest gathers exactly that interest
    assert result["top10_one_interest"] == pytest.approx(1.0)
    assert result["top10_purity"] == pytest.approx(1.0)
    assert 0.0 < result["gathering_share"] < 1.0  # interests with < 10 items do not count


def test_top10_measures_fall_when_dispatchers_gather_mixed_interests(tiny_synthetic):
    data = tiny_synthetic
    model = _Planted(data.truth.item_interest, k=4, max_len=16, mixed=True)
    result = interest_recovery(model, data, leave_one_out(data), max_users=25, batch_size=8)
    assert result["gathering_share"] > 0.5  # all but the histories shorter than 10
    assert result["top10_one_interest"] < 0.2 and result["top10_purity"] < 0.9


def test_interest_recovery_runs_on_elastic_and_refuses_data_without_truth(tiny_synthetic):
    torch.manual_seed(0)
    data = tiny_synthetic
    model = build_model(
        "elastic",
        num_items=data.num_items,
        max_len=16,
        d_model=16,
        num_layers=1,
        num_interests=4,
        num_slots=16,
    )
    result = interest_recovery(model, data, leave_one_out(data))
    assert result["users"] == data.num_users
    for key in ("dispatcher_nmi", "dispatcher_nmi_per_user", "slot_nmi"):
        assert 0.0 <= result[key] <= 1.0
    plain = _dataset(data.sequences, data.num_items)
    with pytest.raises(ValueError, match="planted interests"):
        interest_recovery(model, plain, leave_one_out(plain))


def _states_and_seen(num_items=40, users=6, d=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(users, d, dtype=torch.float64, generator=generator)
    weight = torch.randn(num_items + 1, d, dtype=torch.float64, generator=generator)
    targets = torch.randint(1, num_items + 1, (users,), generator=generator)
    seen_rows = torch.arange(users).repeat_interleave(4)
    seen_items = torch.randint(1, num_items + 1, (users * 4,), generator=generator)
    return states, weight, targets, seen_rows, seen_items


@pytest.mark.parametrize("item_chunk", [1, 7, 41, 1000])
def test_chunked_ranks_equal_the_ranks_of_the_whole_score_matrix(item_chunk):
    states, weight, targets, seen_rows, seen_items = _states_and_seen()
    seen_items[0] = targets[0]  # a repeated target stays a candidate
    states[1, 0] = float("nan")  # a NaN user: worst rank
    weight[7, 0] = float("nan")  # a NaN item: above every target
    want = target_ranks(states @ weight.T, targets, seen_rows, seen_items)
    got = chunked_target_ranks(states, weight, targets, seen_rows, seen_items, item_chunk)
    assert got.tolist() == want.tolist()
    # the NaN user is last: 1 + every other item that is not filtered
    assert got[1] == 1 + 39 - len(set(seen_items[4:8].tolist()) - {targets[1].item()})


@pytest.mark.parametrize("item_chunk", [3, 16, 1000])
def test_top_k_is_the_best_k_of_the_filtered_scores(item_chunk):
    states, weight, _targets, seen_rows, seen_items = _states_and_seen()
    scorer = SimpleNamespace(user_state=lambda history: states, item_weight=weight)
    scores, items = top_k_items(scorer, torch.zeros(6, 3, dtype=torch.long), 10,
                                seen_rows, seen_items, item_chunk)
    full = states @ weight.T
    full[:, 0] = NEG
    full[seen_rows, seen_items] = NEG
    want_scores, want_items = full.topk(10, dim=1)
    assert torch.equal(items, want_items)
    torch.testing.assert_close(scores, want_scores)  # a chunk's product may round differently


@pytest.mark.parametrize("name", ["sasrec", "elastic"])
def test_models_rank_the_catalogue_in_chunks_as_their_logits_do(name):
    """`evaluate` scores a model through user_state chunk by chunk; the ranks must be those of
    the (B, |I|+1) logits of forward()."""
    data = make_synthetic(SyntheticConfig(num_users=30, num_items=50, planted_interests=3,
                                          min_seq_len=6, max_seq_len=14, seed=1))
    split = leave_one_out(data)
    torch.manual_seed(0)
    model = build_model(name, num_items=50, max_len=12, d_model=16, num_layers=2,
                        num_interests=4, num_slots=16).double().eval()
    loader = EvalLoader(split, "test", max_len=12, batch_size=8)
    history = loader.history_ids[:8]
    torch.testing.assert_close(model.scores(model.user_state(history)), model(history))
    chunked = evaluate(model, loader, item_chunk=9)
    whole = evaluate(lambda history_ids: model(history_ids), loader)
    assert chunked == whole


def test_popularity_ranks_the_same_whole_or_in_chunks():
    data = make_synthetic(SyntheticConfig(num_users=40, num_items=60, planted_interests=3,
                                          min_seq_len=6, max_seq_len=14, seed=2))
    split = leave_one_out(data)
    loader = EvalLoader(split, "test", max_len=10, batch_size=16)
    scorer = PopularityScorer(split)
    assert evaluate(scorer, loader, item_chunk=7) == evaluate(lambda h: scorer(h), loader)
