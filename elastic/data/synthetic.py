"""Synthetic sequences with planted interests: the embedded default dataset.

Each item belongs to one of G latent interests. A user holds a few interests; one of them is
*active* and persists for several steps before the user switches to another; now and then a
held interest is replaced by a new one (drift). Items are drawn inside the active interest,
either as the successor of the user's previous item of that interest along the interest's own
order (sequential structure) or by Zipf popularity. Nothing is repeated within a user, as in
MovieLens, so that full-ranking evaluation with the history filtered out never faces an
unreachable target.

Because the ground truth is returned, the app can measure whether ELASTIC's dispatchers and
memory slots recover the planted interests (`interest_agreement`, an NMI).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from elastic.data.interactions import MIN_SEQUENCE_LENGTH, DataError, InteractionData

# Rejection tries before a popularity draw falls back to renormalising over unseen items.
_POPULARITY_TRIES = 8


@dataclass
class SyntheticConfig:
    """Sizes and dynamics of the planted-interest generator.

    The defaults make a dataset a small transformer learns to a visibly good model on a
    2-core CPU in well under a minute (see docs/data.md for the reasoning).
    """

    num_users: int = 1000  # enough users that every interest is seen in many contexts
    num_items: int = 500  # small catalogue: the full softmax is cheap on a CPU
    num_interests: int = 8  # G planted interests, ~62 items each at the default size
    interests_per_user: int = 3  # a sparse mixture: each user holds 3 of the G interests
    min_seq_len: int = 50  # history lengths are uniform in [min_seq_len, max_seq_len]
    max_seq_len: int = 100  # long enough that dispatchers have several interest runs to find
    switch_prob: float = 0.15  # per step, the active interest changes: runs of ~7 items
    drift_prob: float = 0.01  # per step, a held interest is replaced by a new, now active one
    popularity_skew: float = 1.0  # Zipf exponent of item popularity within an interest
    order_prob: float = 0.5  # per step, the next item succeeds the previous one of its interest
    seed: int = 0  # same seed, same dataset (fingerprint included)

    def __post_init__(self) -> None:
        problems = []
        if self.num_users < 1:
            problems.append(f"num_users must be at least 1 (got {self.num_users})")
        if not 1 <= self.num_interests <= self.num_items:
            problems.append(
                f"num_interests must lie in 1..num_items={self.num_items} "
                f"(got {self.num_interests})"
            )
        if not 1 <= self.interests_per_user <= self.num_interests:
            problems.append(
                f"interests_per_user must lie in 1..num_interests={self.num_interests} "
                f"(got {self.interests_per_user})"
            )
        if not MIN_SEQUENCE_LENGTH <= self.min_seq_len <= self.max_seq_len:
            problems.append(
                f"need {MIN_SEQUENCE_LENGTH} <= min_seq_len <= max_seq_len "
                f"(got {self.min_seq_len}, {self.max_seq_len}); leave-one-out needs 3 items"
            )
        if self.max_seq_len > self.num_items:
            problems.append(
                f"max_seq_len={self.max_seq_len} exceeds num_items={self.num_items}; "
                "a user never repeats an item"
            )
        for name in ("switch_prob", "drift_prob", "order_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                problems.append(f"{name} must lie in [0, 1] (got {value})")
        if self.popularity_skew < 0:
            problems.append(f"popularity_skew must be >= 0 (got {self.popularity_skew})")
        if problems:
            raise DataError(
                "invalid synthetic configuration: " + "; ".join(problems),
                path="synthetic",
                fix="Change these settings and generate again",
            )


@dataclass
class SyntheticTruth:
    """What the generator planted, for measuring what a model recovers."""

    item_interest: np.ndarray  # (num_items + 1,) int64 interest index of each item; -1 at 0
    user_interests: list[np.ndarray]  # per user, the active interest at each step of its sequence
    interest_names: list[str]  # display name of each interest index ("I0", "I1", ...)


class _InterestCatalogue:
    """The items of each interest, in the interest's own order, with Zipf popularity.

    Held as Python lists: the generator walks them one step at a time, where list access is
    several times faster than indexing numpy arrays with scalars.
    """

    def __init__(self, item_interest: np.ndarray, skew: float, rng: np.random.Generator):
        num_interests = int(item_interest.max()) + 1
        # order[g]: the interest's item sequence; "successor" means the next one in it
        orders = [rng.permutation(np.flatnonzero(item_interest == g)) for g in range(num_interests)]
        self.order: list[list[int]] = [items.tolist() for items in orders]
        self.size: list[int] = [items.size for items in orders]
        self.popularity_cdf: list[list[float]] = []
        for items in orders:
            # popularity rank is independent of the order, so both signals carry information
            ranks = rng.permutation(items.size)
            weights = (ranks + 1.0) ** -skew
            self.popularity_cdf.append((np.cumsum(weights) / weights.sum()).tolist())


class _UserWalk:
    """One user's history, step by step, never repeating an item."""

    def __init__(self, catalogue: _InterestCatalogue, num_items: int, rng: np.random.Generator):
        self.catalogue = catalogue
        self.rng = rng
        self.seen = bytearray(num_items + 1)
        self.seen_per_interest = [0] * len(catalogue.size)
        self.last_position: dict[int, int] = {}  # interest -> order position of its last item

    def exhausted(self, interest: int) -> bool:
        return self.seen_per_interest[interest] == self.catalogue.size[interest]

    def take(self, interest: int, follow_order: bool, popularity_coin: float) -> int:
        items = self.catalogue.order[interest]
        if follow_order and interest in self.last_position:
            position = self.last_position[interest]
            while True:  # terminates: the caller checked the interest is not exhausted
                position = (position + 1) % len(items)
                if not self.seen[items[position]]:
                    break
        else:
            position = self._popular_position(interest, popularity_coin)
        item = items[position]
        self.seen[item] = 1
        self.seen_per_interest[interest] += 1
        self.last_position[interest] = position
        return item

    def _popular_position(self, interest: int, coin: float) -> int:
        items = self.catalogue.order[interest]
        cdf = self.catalogue.popularity_cdf[interest]
        for _ in range(_POPULARITY_TRIES):
            position = min(bisect.bisect_right(cdf, coin), len(items) - 1)
            if not self.seen[items[position]]:
                return position
            coin = self.rng.random()
        # late in a long history most popular items are taken: draw among the unseen ones
        unseen = np.frombuffer(self.seen, dtype=np.uint8)[items] == 0
        weights = np.diff(cdf, prepend=0.0) * unseen
        return int(self.rng.choice(len(items), p=weights / weights.sum()))


def make_synthetic(config: SyntheticConfig | None = None) -> InteractionData:
    """Generate a planted-interest dataset; `truth` holds the planted interests."""
    config = config or SyntheticConfig()
    rng = np.random.default_rng(config.seed)
    num_interests = config.num_interests
    item_interest = np.full(config.num_items + 1, -1, dtype=np.int64)
    # balanced interests, item ids shuffled so an id says nothing about its interest
    item_interest[1:] = rng.permutation(np.arange(config.num_items) % num_interests)
    catalogue = _InterestCatalogue(item_interest, config.popularity_skew, rng)

    sequences, user_interests = [], []
    for _ in range(config.num_users):
        length = int(rng.integers(config.min_seq_len, config.max_seq_len + 1))
        items, interests = _generate_user(config, catalogue, length, rng)
        sequences.append(items)
        user_interests.append(interests)

    interest_names = [f"I{g}" for g in range(num_interests)]
    genres = [""] + [interest_names[g] for g in item_interest[1:]]
    titles = [""] + [f"{genres[i]} · item {i}" for i in range(1, config.num_items + 1)]
    return InteractionData(
        name="synthetic",
        sequences=sequences,
        num_items=config.num_items,
        user_ids=list(range(1, config.num_users + 1)),
        item_ids=[None, *range(1, config.num_items + 1)],
        item_titles=titles,
        item_genres=genres,
        truth=SyntheticTruth(
            item_interest=item_interest,
            user_interests=user_interests,
            interest_names=interest_names,
        ),
        source="synthetic",
    )


def _generate_user(
    config: SyntheticConfig,
    catalogue: _InterestCatalogue,
    length: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    num_interests = config.num_interests
    held = rng.choice(num_interests, size=config.interests_per_user, replace=False).tolist()
    active = held[int(rng.integers(len(held)))]
    walk = _UserWalk(catalogue, config.num_items, rng)
    # one draw for all per-step coins: (drift, switch, follow order, popularity)
    coins = rng.random((length, 4)).tolist()
    items, interests = [], []
    for step, (drift_coin, switch_coin, order_coin, popularity_coin) in enumerate(coins):
        if step > 0 and drift_coin < config.drift_prob and len(held) < num_interests:
            active = _replace_interest(held, active, rng, walk)
        elif step > 0 and switch_coin < config.switch_prob and len(held) > 1:
            others = [g for g in held if g != active]
            active = others[int(rng.integers(len(others)))]
        if walk.exhausted(active):
            active = _next_interest_with_items(held, active, rng, walk)
        items.append(walk.take(active, order_coin < config.order_prob, popularity_coin))
        interests.append(active)
    return np.array(items, dtype=np.int64), np.array(interests, dtype=np.int64)


def _replace_interest(
    held: list[int],
    active: int,
    rng: np.random.Generator,
    walk: _UserWalk,
) -> int:
    """Swap one held interest for one the user does not hold; the newcomer becomes active."""
    candidates = [
        g for g in range(len(walk.seen_per_interest)) if g not in held and not walk.exhausted(g)
    ]
    if not candidates:
        return active
    newcomer = candidates[int(rng.integers(len(candidates)))]
    held[int(rng.integers(len(held)))] = newcomer
    return newcomer


def _next_interest_with_items(
    held: list[int], active: int, rng: np.random.Generator, walk: _UserWalk
) -> int:
    """The active interest has no unseen item left: switch, or adopt a new interest."""
    others = [g for g in held if g != active and not walk.exhausted(g)]
    if others:
        return others[int(rng.integers(len(others)))]
    # max_seq_len <= num_items guarantees some interest still has unseen items
    return _replace_interest(held, active, rng, walk)


def interest_agreement(labels_a: Sequence | np.ndarray, labels_b: Sequence | np.ndarray) -> float:
    """Normalised mutual information of two labelings of the same objects, in [0, 1].

    NMI = I(A; B) / ((H(A) + H(B)) / 2) (the arithmetic-mean normalisation, as scikit-learn's
    default). Labels may be any hashable values; only the partition they induce matters, so
    renaming the clusters leaves it unchanged. Two single-cluster labelings agree perfectly
    (1.0); a single cluster against several carries no information (0.0). Drop ignored
    entries (e.g. `item_interest[0] == -1`, the padding) before calling.
    """
    a = np.asarray(labels_a).ravel()
    b = np.asarray(labels_b).ravel()
    if a.size != b.size:
        raise ValueError(f"labelings differ in length: {a.size} vs {b.size}")
    if a.size == 0:
        raise ValueError("interest_agreement needs at least one labelled object")
    _, codes_a = np.unique(a, return_inverse=True)
    _, codes_b = np.unique(b, return_inverse=True)
    clusters_a, clusters_b = codes_a.max() + 1, codes_b.max() + 1
    joint = np.bincount(codes_a * clusters_b + codes_b, minlength=clusters_a * clusters_b)
    joint = joint.reshape(clusters_a, clusters_b) / a.size  # (|A|, |B|) joint distribution
    p_a, p_b = joint.sum(axis=1), joint.sum(axis=0)
    observed = joint > 0
    mutual_information = float(
        (joint[observed] * np.log(joint[observed] / np.outer(p_a, p_b)[observed])).sum()
    )
    entropy_a = float(-(p_a * np.log(p_a)).sum())
    entropy_b = float(-(p_b * np.log(p_b)).sum())
    if entropy_a == 0.0 and entropy_b == 0.0:
        return 1.0
    return float(np.clip(mutual_information / ((entropy_a + entropy_b) / 2), 0.0, 1.0))
