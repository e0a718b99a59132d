"""Which compute devices torch sees, asked in a child process so the GUI never imports torch.

Run as `python -m SATSegmentSlicerLib.devices`: prints one JSON line
`{"event": "devices", "cuda": bool, "gpus": [{"name": str, "memory_gb": float}], "torch": version or null}`.
`DeviceProbe` runs it through `WorkerClient`, the module's one way of running child processes.
"""

from __future__ import annotations

import json
from typing import Callable

from .worker import WorkerClient

DevicesCallback = Callable[[dict], None]


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


def memoryNeeds(variant: str) -> dict:
    """Memory one window of `variant` needs (decimal GB, SATSegmentLib's estimate; no torch needed)."""
    from SATSegmentLib.model import SATConfig
    from SATSegmentLib.model.memory import window_needs

    return window_needs(SATConfig.for_variant(variant))


def memoryAdvice(gpus: list[dict], variant: str | None) -> dict | None:
    """What the chosen model needs (`memoryNeeds`), plus `smallGpu`: the first GPU when it is too small for
    one window (Automatic then runs on the CPU), else None. None for a model folder (no variant). The widget
    words it, so the text is translatable."""
    if not variant:
        return None
    needs = memoryNeeds(variant)
    small = gpus[0] if gpus and gpus[0]["memory_gb"] * 2**30 / 1e9 < needs["gpu_gb"] else None
    return {**needs, "smallGpu": small}


class DeviceProbe:
    """Asks a child Python which GPUs torch sees; `onKnown(info)` runs once from `poll()` with
    `{"gpus": [...], "error": None or the reason the question could not be answered}`."""

    def __init__(self, command: list[str], env: dict[str, str] | None, onKnown: DevicesCallback | None = None,
                 onLog: Callable[[str], None] | None = None) -> None:
        self.command, self.env = command, env
        self.onKnown = onKnown or (lambda info: None)
        self.onLog = onLog or (lambda line: None)
        self._client: WorkerClient | None = None
        self._answer: dict | None = None

    @property
    def busy(self) -> bool:
        return self._client is not None

    def start(self) -> None:
        """Ask again (after an installation, for example); a question still open is answered first."""
        if self._client is not None:
            return
        self._answer = None
        self._client = WorkerClient(self.command, self.env, onEvent=self._onEvent, onLog=self.onLog, onExit=self._onExit)
        try:
            self._client.start()
        except OSError as exc:
            self._client = None
            self.onKnown({"gpus": [], "error": str(exc)})

    def poll(self) -> None:
        if self._client is not None:
            self._client.poll()

    def _onEvent(self, event: dict) -> None:
        if event.get("event") == "devices":
            self._answer = {"gpus": list(event.get("gpus") or []), "error": None}

    def _onExit(self, returnCode: int) -> None:
        self._client = None
        self.onKnown(self._answer or {"gpus": [], "error": f"exit code {returnCode}"})


if __name__ == "__main__":
    print(json.dumps({"event": "devices", **describeDevices()}), flush=True)
