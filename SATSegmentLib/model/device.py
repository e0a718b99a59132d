"""Compute device and precision selection for SAT (fp32 by default; optional autocast)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from ..errors import DeviceError, InputError

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """'auto' -> CUDA if available else CPU; 'cpu', 'cuda', 'cuda:N', 'mps' are checked to exist."""
    if isinstance(name, torch.device):
        name = str(name)
    key = str(name).strip().lower()
    if key == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(key)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {name!r}", hint="use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("CUDA was requested but no CUDA GPU is usable here "
                              f"(torch {torch.__version__}, built {'with' if torch.version.cuda else 'without'} CUDA)",
                              hint="use --device cpu (slower), or install a CUDA build of PyTorch and a GPU driver")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"GPU {device.index} does not exist (this machine has {torch.cuda.device_count()})",
                              hint="use --device cuda or a smaller GPU index")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("Apple MPS was requested but is not available", hint="use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device {name!r}", hint="use auto, cpu or cuda")
    return device


@contextlib.contextmanager
def autocast(device: torch.device, precision: str = "fp32") -> Iterator[None]:
    """Mixed precision for inference: 'fp32' (no autocast), 'fp16' (CUDA only, as the official code) or 'bf16'."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}", hint=f"use one of {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        yield
        return
    if dtype is torch.float16 and device.type != "cuda":
        raise InputError("fp16 autocast needs a CUDA GPU", hint="use fp32 (default) or bf16 on CPU")
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
