"""Synthetic sessions of planted interests: the embedded default dataset, built to need ELASTIC.

Ground truth. The catalogue is split into G planted *interests*, each split into F *facets*
(sub-genres). A user holds m interests, visited in *sessions* of `session_len` items that
rotate through them in a fixed, user-specific cyclic order (A, B, C, A, B, C, ...), and
inside each held interest prefers one facet (their *taste*): a session draws from the user's
facet with probability `taste`, otherwise from the interest's other facets, by Zipf popularity,
never repeating an item.

What predicts the next item, and what does not:

- inside a session, the last few items name the interest but only hint at the facet: with
  F = 8 facets and taste 0.6 an item is of the user's facet only 6 times in 10, so the 1–3
  items of the session so far often point at another facet, while the 15–30 earlier items of
  that interest reveal it: a summary per interest over the whole history, not the last few
  items, tells the facet (a SASRec reading only the last 8 items loses 25–29 % of NDCG@10);
- at a session start (one target in `session_len`) the next interest is the held interest
  that is neither the current nor the previous one, last visited two sessions ago — farther
  back than the local window when `2·session_len > w` — and the right items are the user's
  facet of it, which only that user's earlier sessions of that interest reveal;
- an average over the whole history blends the m facets, so it cannot tell which one comes
  next.

Users come in *archetypes* (taste communities, `archetypes` of them, 32 by default): the
members of one share their held interests, rotation and tastes, and differ in where their
history starts, its length and the items drawn. What a user's few recent items do not show is
then also what users like them showed (collaborative structure); `archetypes=0` draws every user
independently.

So one summary per held interest (its facet), chosen by where the rotation stands, is what
the last few items and a history average both lack: per-user, long-range, multi-interest
memory. Each user's rotation starts at a random point of a random session, so the end of a
sequence (where leave-one-out puts the validation and test targets) is at a random phase:
no position near the end is special.

The generator returns the truth (item → interest and facet, user → held interests in order,
tastes, and the active interest of every step) so the app and `interest_recovery` can measure
whether dispatchers and memory slots recover it (`interest_agreement`, an NMI).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from elastic.data.interactions import MIN_SEQUENCE_LENGTH, DataError, InteractionData
from elastic.defaults import SYNTHETIC_DATA as _D

# Rejection tries before a popularity draw falls back to renormalising over unseen items.
_POPULARITY_TRIES = 8
FACET_NAMES = "abcdefghijklmnopqrstuvwxyz"


@dataclass
class SyntheticConfig:
    """Sizes and dynamics of the planted-interest generator; the defaults live in
    `elastic.defaults.SYNTHETIC_DATA` (docs/data.md gives the reasons).

    The defaults make a dataset where the dispatchers must carry long-range, per-user memory,
    and the default model still trains in under a minute on a 2-core CPU.
    """

    num_users: int = _D["num_users"]  # enough users that every interest and facet is seen often
    num_items: int = _D["num_items"]
    planted_interests: int = _D["planted_interests"]  # G
    facets: int = _D["facets"]  # F sub-genres per interest; a user prefers one in each held one
    interests_per_user: int = _D["interests_per_user"]  # m held interests, visited in rotation
    session_len: int = _D["session_len"]  # items per session
    taste: float = _D["taste"]  # share of a session's items drawn from the user's facet
    min_seq_len: int = _D["min_seq_len"]  # history lengths are uniform in [min, max]
    max_seq_len: int = _D["max_seq_len"]
    popularity_skew: float = _D["popularity_skew"]  # Zipf exponent of popularity in a facet
    seed: int = _D["seed"]  # same seed, same dataset (fingerprint included)
    archetypes: int = _D["archetypes"]  # > 0: users copy held interests, rotation and tastes
    # from one of this many archetypes (taste communities); 0: every user drawn independently

    def __post_init__(self) -> None:
        problems = []
        if self.num_users < 1:
            problems.append(f"num_users must be at least 1 (got {self.num_users})")
        if self.planted_interests < 1 or self.facets < 1:
            problems.append(
                f"planted_interests and facets must be at least 1 "
                f"(got {self.planted_interests}, {self.facets})"
            )
        elif self.planted_interests * self.facets > self.num_items:
            problems.append(
                f"planted_interests × facets = {self.planted_interests * self.facets} exceeds "
                f"num_items={self.num_items}; every facet needs an item"
            )
        if not 1 <= self.interests_per_user <= max(1, self.planted_interests):
            problems.append(
                f"interests_per_user must lie in 1..planted_interests={self.planted_interests} "
                f"(got {self.interests_per_user})"
            )
        if self.session_len < 1:
            problems.append(f"session_len must be at least 1 (got {self.session_len})")
        if not 0.0 <= self.taste <= 1.0:
            problems.append(f"taste must lie in [0, 1] (got {self.taste})")
        if not MIN_SEQUENCE_LENGTH <= self.min_seq_len <= self.max_seq_len:
            problems.append(
                f"need {MIN_SEQUENCE_LENGTH} <= min_seq_len <= max_seq_len "
                f"(got {self.min_seq_len}, {self.max_seq_len}); leave-one-out needs 3 items"
            )
        elif self.planted_interests >= 1 and self._draws_per_interest() > self._smallest_interest():
            problems.append(
                f"max_seq_len={self.max_seq_len} draws up to {self._draws_per_interest()} items "
                f"of one interest (sessions of {self.session_len} over "
                f"{self.interests_per_user} interests), more than the "
                f"{self._smallest_interest()} items of the smallest interest; a user never "
                f"repeats an item"
            )
        if self.archetypes < 0:
            problems.append(f"archetypes must be >= 0 (got {self.archetypes})")
        if self.popularity_skew < 0:
            problems.append(f"popularity_skew must be >= 0 (got {self.popularity_skew})")
        if problems:
            raise DataError(
                "invalid synthetic configuration: " + "; ".join(problems),
                path="synthetic",
                fix="Change these settings and generate again",
            )

    def _draws_per_interest(self) -> int:
        """The most items a history of max_seq_len draws from one held interest: whole sessions
        of the rotation, one more if the history starts inside that interest's session."""
        period = self.session_len * self.interests_per_user
        return self.session_len * math.ceil(self.max_seq_len / period)

    def _smallest_interest(self) -> int:
        """Items of the smallest interest, under `make_synthetic`'s layout."""
        return int(np.bincount(_item_slots(self) // self.facets,
                               minlength=self.planted_interests).min())


def _item_slots(config: SyntheticConfig) -> np.ndarray:
    """(num_items,) the (interest, facet) slot g·F + f of each item, before shuffling: item i
    goes to slot i mod G·F, so slots (and interests) differ by at most one item per slot."""
    return np.arange(config.num_items) % (config.planted_interests * config.facets)


@dataclass
class SyntheticTruth:
    """What the generator planted, for measuring what a model recovers."""

    item_interest: np.ndarray  # (num_items + 1,) int64 interest index of each item; -1 at 0
    user_interests: list[np.ndarray]  # per user, the active interest at each step of its sequence
    interest_names: list[str]  # display name of each interest index ("I0", "I1", ...)
    item_facet: np.ndarray | None = None  # (num_items + 1,) facet index within its interest
    user_rotation: list[np.ndarray] | None = None  # per user, held interests in visiting order
    user_tastes: list[np.ndarray] | None = None  # per user, the preferred facet of each held one
    user_archetype: np.ndarray | None = None  # (num_users,) archetype of each user; None if none


class _Catalogue:
    """The items of each (interest, facet), with Zipf popularity.

    Held as Python lists: the generator walks them one step at a time, where list access is
    several times faster than indexing numpy arrays with scalars.
    """

    def __init__(self, item_interest, item_facet, interests, facets, skew, rng):
        self.items: list[list[list[int]]] = []
        self.cdf: list[list[list[float]]] = []
        for g in range(interests):
            per_facet, cdfs = [], []
            for f in range(facets):
                members = rng.permutation(
                    np.flatnonzero((item_interest == g) & (item_facet == f))
                )  # popularity rank = position in this random order
                weights = (np.arange(members.size) + 1.0) ** -skew
                per_facet.append(members.tolist())
                cdfs.append((np.cumsum(weights) / weights.sum()).tolist())
            self.items.append(per_facet)
            self.cdf.append(cdfs)


class _UserWalk:
    """One user's history, item by item, never repeating an item."""

    def __init__(self, catalogue: _Catalogue, num_items: int, rng: np.random.Generator):
        self.catalogue = catalogue
        self.rng = rng
        self.seen = bytearray(num_items + 1)

    def take(self, interest: int, facet_order: list[int]) -> int:
        """A popular unseen item of the first facet in `facet_order` that has one left."""
        for facet in facet_order:
            item = self._popular_unseen(interest, facet)
            if item is not None:
                self.seen[item] = 1
                return item
        raise AssertionError("unreachable: max_seq_len is checked against the reachable items")

    def _popular_unseen(self, interest: int, facet: int) -> int | None:
        items = self.catalogue.items[interest][facet]
        cdf = self.catalogue.cdf[interest][facet]
        for _ in range(_POPULARITY_TRIES):
            item = items[min(bisect.bisect_right(cdf, self.rng.random()), len(items) - 1)]
            if not self.seen[item]:
                return item
        # late in a long history most popular items are taken: draw among the unseen ones
        unseen = np.frombuffer(self.seen, dtype=np.uint8)[items] == 0
        if not unseen.any():
            return None
        weights = np.diff(cdf, prepend=0.0) * unseen
        return items[int(self.rng.choice(len(items), p=weights / weights.sum()))]


def make_synthetic(config: SyntheticConfig | None = None) -> InteractionData:
    """Generate the planted-interest sessions; `truth` holds what was planted."""
    config = config or SyntheticConfig()
    rng = np.random.default_rng(config.seed)
    g_count, f_count = config.planted_interests, config.facets
    # balanced interests and facets; ids shuffled so an id says nothing about either
    layout = rng.permutation(_item_slots(config))
    item_interest = np.concatenate(([-1], layout // f_count)).astype(np.int64)
    item_facet = np.concatenate(([-1], layout % f_count)).astype(np.int64)
    catalogue = _Catalogue(item_interest, item_facet, g_count, f_count,
                           config.popularity_skew, rng)

    templates = [(rng.choice(g_count, size=config.interests_per_user, replace=False),
                  rng.integers(f_count, size=config.interests_per_user))
                 for _ in range(config.archetypes)]
    sequences, active, rotations, tastes, archetype_of = [], [], [], [], []
    for _ in range(config.num_users):
        length = int(rng.integers(config.min_seq_len, config.max_seq_len + 1))
        if templates:
            archetype_of.append(int(rng.integers(len(templates))))
            rotation, taste = templates[archetype_of[-1]]
        else:
            rotation = rng.choice(g_count, size=config.interests_per_user, replace=False)
            taste = rng.integers(f_count, size=rotation.size)
        items, interests = _generate_user(config, catalogue, rotation, taste, length, rng)
        sequences.append(items)
        active.append(interests)
        rotations.append(rotation.astype(np.int64))
        tastes.append(taste.astype(np.int64))

    interest_names = [f"I{g}" for g in range(g_count)]
    genres = [""] + [interest_names[g] for g in item_interest[1:]]
    titles = [""] + [
        f"{genres[i]}{FACET_NAMES[item_facet[i] % 26]} · item {i}"
        for i in range(1, config.num_items + 1)
    ]
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
            user_interests=active,
            interest_names=interest_names,
            item_facet=item_facet,
            user_rotation=rotations,
            user_tastes=tastes,
            user_archetype=np.array(archetype_of, dtype=np.int64) if templates else None,
        ),
        source="synthetic",
    )


def _generate_user(
    config: SyntheticConfig,
    catalogue: _Catalogue,
    rotation: np.ndarray,
    taste: np.ndarray,
    length: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    walk = _UserWalk(catalogue, config.num_items, rng)
    # a random phase: which held interest comes first, and how far into its session we are
    step = int(rng.integers(config.session_len * len(rotation)))
    facets = list(range(config.facets))
    items, interests = [], []
    for _ in range(length):
        slot = (step // config.session_len) % len(rotation)
        interest, own = int(rotation[slot]), int(taste[slot])
        others = [f for f in facets if f != own]
        rng.shuffle(others)
        order = [own, *others] if rng.random() < config.taste else [*others, own]
        items.append(walk.take(interest, order))
        interests.append(interest)
        step += 1
    return np.array(items, dtype=np.int64), np.array(interests, dtype=np.int64)


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
