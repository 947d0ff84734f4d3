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


@pytest.fixture(autouse=True)
def one_thread():
    """Test tensors are tiny: one thread beats two on a shared 2-core machine, several times."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
