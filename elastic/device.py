"""The one place a device is chosen."""

from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    """"auto" -> cuda, then mps, then cpu. An explicit device that is absent is an error with a
    sentence, not a crash deep inside torch."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("CUDA was asked for but no CUDA device is available; use --device cpu")
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError("MPS was asked for but is not available; use --device cpu")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    """A human name: 'cpu (2 threads)' or the GPU's name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type
