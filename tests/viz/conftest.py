"""A tiny synthetic dataset and an untrained tiny ELASTIC (fixed seeds) for the view tests."""

from __future__ import annotations

import pytest
import torch

from elastic.data import load_dataset
from elastic.models import build_model


@pytest.fixture(scope="module")
def data():
    return load_dataset(
        "synthetic",
        num_users=40,
        num_items=64,  # 4 interests of 16: 30-item histories draw at most 16 of one
        planted_interests=4,
        facets=2,
        interests_per_user=2,
        min_seq_len=8,
        max_seq_len=30,
        seed=3,
    )


@pytest.fixture(scope="module")
def model(data):
    torch.manual_seed(0)
    return build_model(
        "elastic",
        num_items=data.num_items,
        max_len=16,
        d_model=16,
        num_layers=2,
        num_heads=2,
        num_interests=4,
        num_slots=16,
        dropout=0.0,
    ).eval()
