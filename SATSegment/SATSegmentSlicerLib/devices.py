"""Which compute devices torch sees, asked in a child process so the GUI never imports torch.

Run as `python -m SATSegmentSlicerLib.devices`: prints one JSON object
`{"cuda": bool, "gpus": [{"name": str, "memory_gb": float}], "torch": version or null}`.
"""

from __future__ import annotations

import json


def describeDevices() -> dict:
    """GPUs visible to torch, with their memory; an empty list when there is no CUDA or no torch."""
    try:
        import torch
    except ImportError:
        return {"cuda": False, "gpus": [], "torch": None}
    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            properties = torch.cuda.get_device_properties(index)
            gpus.append({"name": properties.name, "memory_gb": round(properties.total_memory / 1024**3, 1)})
    return {"cuda": bool(gpus), "gpus": gpus, "torch": torch.__version__}


def memoryWarning(gpus: list[dict], neededGb: float | None) -> str | None:
    """A warning when the first GPU has less memory than the model needs, else None."""
    if not gpus or not neededGb or gpus[0]["memory_gb"] >= neededGb:
        return None
    return (f"{gpus[0]['name']} has {gpus[0]['memory_gb']:g} GB; this model needs about {neededGb:g} GB on the GPU. "
            "Draw an ROI, choose SAT-Nano, or run on the CPU (slower) if it runs out of memory.")


if __name__ == "__main__":
    print(json.dumps(describeDevices()))
