"""Memory budgets: how much a run may use (free GPU memory or RAM, capped by `--max-memory`), which
backbone plan fits in it, and where to run when the GPU is too small.

The estimates come from `model.memory` (the model config alone), so a run that cannot fit is refused,
or moved to the CPU with `--device auto`, before anything is loaded, with the numbers in the message.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError, OutOfMemoryError
from .model.memory import RunEstimate, VolumeSize, choose_plan

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12,
          "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def parse_size(text: str | int | float | None) -> int | None:
    """Bytes from '4.5GB', '4500MB', '3GiB' or a plain number of bytes; None stays None (no cap).

    Decimal units (kB, MB, GB, TB) are powers of 1000 and binary ones (KiB, MiB, GiB) of 1024, as
    the SI and IEC define them.
    """
    if text is None:
        return None
    if isinstance(text, bool):
        raise InputError("A memory size must be a number of bytes or a text like '4.5GB'.")
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _UNITS:
        raise InputError(f"'{text}' is not a memory size.", "Write it like 4.5GB, 4500MB or 3GiB.")
    value = float(match.group(1)) * _UNITS[unit]
    if not math.isfinite(value) or value < 1e8:
        raise InputError(f"A memory limit of {text} is too small: SAT needs at least a few hundred MB.",
                         "Give a size like 4.5GB.")
    return int(value)


def resolve_precision(precision: str, device_type: str) -> str:
    """'auto' → fp16 autocast on CUDA (how the official model runs and was evaluated), fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise InputError(f"Unknown precision '{precision}'.", f"Use one of: {', '.join(PRECISIONS)}.")
    if precision == "auto":
        return "fp16" if device_type == "cuda" else "fp32"
    if precision == "fp16" and device_type != "cuda":
        raise InputError(f"fp16 autocast needs a CUDA GPU, but the job runs on {device_type}.",
                         "Use --precision fp32 (or auto), or bf16, or --device cuda on a machine with a GPU.")
    return precision


def available_ram() -> int | None:
    """Bytes of RAM the system can give without swapping (Linux MemAvailable, else psutil), None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def free_gpu_memory(device: Any) -> int | None:
    """Free bytes on a CUDA device (as the driver reports them), None where it cannot be asked."""
    import torch

    try:
        return int(torch.cuda.mem_get_info(device)[0])
    except (RuntimeError, AssertionError, ValueError):
        return None


@dataclass
class RunPlan:
    """Where and how a run goes: device, precision, the estimate (with its backbone plan) and warnings."""

    device: Any
    precision: str
    estimate: RunEstimate
    budget: int | None
    warnings: list[str] = field(default_factory=list)


def plan_run(config: Any, device: Any, precision: str, prompts: int, max_memory: int | None = None,
             volume: VolumeSize | None = None, device_requested: str = "auto", reclaimable: int = 0) -> RunPlan:
    """The fastest plan that fits on `device` (a torch.device); with `device_requested` 'auto', a CUDA run
    that does not fit moves to the CPU with a warning. Raises OutOfMemoryError with the numbers otherwise.

    `reclaimable`: host bytes the caller can free for this run (e.g. cached features it would drop).
    """
    chosen = _try(config, device, precision, prompts, max_memory, volume, reclaimable)
    if isinstance(chosen, RunPlan):
        return chosen
    if device.type == "cuda" and device_requested == "auto":
        import torch

        cpu = torch.device("cpu")
        fallback = _try(config, cpu, "fp32" if precision == "fp16" else precision, prompts, max_memory, volume,
                        reclaimable)
        if isinstance(fallback, RunPlan):
            fallback.warnings.insert(0, f"The GPU cannot hold this run: {chosen} Running on the CPU instead "
                                        "(slower); use --device cuda to insist, or a smaller --roi.")
            return fallback
        chosen = f"{chosen} On the CPU: {fallback}"
    raise OutOfMemoryError(f"Not enough memory for this run: {chosen}",
                           "Close other programs, segment a smaller region (--roi), use SAT-Nano instead of SAT-Pro, "
                           "or run where more memory is free.")


def _try(config: Any, device: Any, precision: str, prompts: int, max_memory: int | None, volume: VolumeSize | None,
         reclaimable: int) -> RunPlan | str:
    """A RunPlan on `device`, or the sentence saying why none fits."""
    precision = resolve_precision(precision, device.type)
    free = free_gpu_memory(device) if device.type == "cuda" else _plus(available_ram(), reclaimable)
    budget = min(b for b in (free, max_memory) if b is not None) if (free, max_memory) != (None, None) else None
    fitting, leanest = choose_plan(config, device.type, precision, prompts, budget if budget is not None else 2**62,
                                   volume)
    if fitting is not None:
        return RunPlan(device, precision, fitting, budget)
    where = "RAM" if device.type == "cpu" else f"GPU memory ({device})"
    limits = []
    if free is not None:
        limits.append(f"{free / 1e9:.1f} GB of {where} free")
    if max_memory is not None:
        limits.append(f"--max-memory {max_memory / 1e9:.1f} GB")
    return f"it needs {leanest.needed / 1e9:.1f} GB ({leanest.breakdown()}), but there is {' and '.join(limits)}."


def _plus(value: int | None, extra: int) -> int | None:
    return None if value is None else value + extra
