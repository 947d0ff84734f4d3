"""Fixtures shared by every test package."""

from __future__ import annotations

import os

import pytest
import torch

from elastic.device import pick_device


@pytest.fixture
def device() -> torch.device:
    """Where device-aware tests run: ELASTIC_TEST_DEVICE (default cpu; benchmarks/gpu.sh sets
    cuda). Asking for an absent device fails with pick_device's sentence, not a skip."""
    return pick_device(os.environ.get("ELASTIC_TEST_DEVICE", "cpu"))
