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


PRECISIONS = ("fp32", "bf16", "auto")


def native_bf16(device: torch.device) -> bool:
    """Does the device compute in bf16 natively: an Ampere or later GPU, or a CPU with
    AVX512-BF16 or AMX? Elsewhere bf16 autocast runs, but emulated and slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        capabilities = torch.cpu.get_capabilities()
        return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))
    return False


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype of a training step: None (float32) for "fp32", bfloat16 for "bf16",
    and for "auto" bfloat16 where `native_bf16(device)`, else None."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16" and device.type not in ("cuda", "cpu"):
        raise ValueError(f"bf16 autocast is not supported on {device.type}; use --precision fp32")
    if precision == "bf16" or (precision == "auto" and native_bf16(device)):
        return torch.bfloat16
    return None
