"""Random-weight SAT models in the exact official checkpoint layout, for tests and benchmarks.

This is the only way to exercise the real loading code without the released weights. Files look
like the SAT trainer's: `{'step', 'model_state_dict'}`, DDP `module.` keys, both alias key sets,
deep-supervision heads `mid_mask_embed_proj.*`, and (text encoder) the old `position_ids` buffer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .config import SATConfig
from .loaded import SEGMENTATION_FILE, TEXT_ENCODER_FILE
from .sat import SATModel, _mlp
from .text_encoder import TextEncoder


def _randomize_norms(module: nn.Module, generator: torch.Generator) -> None:
    """Give norm layers non-trivial affine parameters so swapped or skipped weights change the output."""
    for sub in module.modules():
        if isinstance(sub, (nn.LayerNorm, nn.InstanceNorm3d)) and sub.weight is not None:
            with torch.no_grad():
                sub.weight.copy_(1 + 0.1 * torch.randn(sub.weight.shape, generator=generator))
                sub.bias.copy_(0.1 * torch.randn(sub.bias.shape, generator=generator))


def random_models(config: SATConfig, seed: int = 0) -> tuple[SATModel, TextEncoder]:
    """A randomly initialised (seeded) segmentation model and text encoder."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model, text = SATModel(config), TextEncoder(config)
    _randomize_norms(model, generator)
    _randomize_norms(text, generator)
    return model.eval(), text.eval()


def official_segmentation_payload(model: SATModel, seed: int = 0) -> dict:
    """What the SAT trainer saves for `model`: DDP keys, alias keys, deep-supervision heads."""
    cfg = model.config
    torch.manual_seed(seed + 1)
    state = dict(model.state_dict())
    mask_widths = cfg.features_per_stage[1:1 + len(cfg.deep_supervision_hidden)]
    for i, (hidden, out) in enumerate(zip(cfg.deep_supervision_hidden, mask_widths)):
        for name, tensor in _mlp((cfg.query_dim, hidden, out), final_act=True).state_dict().items():
            state[f"mid_mask_embed_proj.{i}.{name}"] = tensor
    return {"step": 0, "model_state_dict": {f"module.{k}": v for k, v in state.items()}}


def official_text_encoder_payload(text_encoder: TextEncoder) -> dict:
    """What the SAT trainer saves for the text encoder (with the transformers<=4.30 `position_ids` buffer)."""
    state = {f"module.{k}": v for k, v in text_encoder.state_dict().items()}
    max_pos = text_encoder.config.text_config["max_position_embeddings"]
    state["module.text_tower.biolord.embeddings.position_ids"] = torch.arange(max_pos).unsqueeze(0)
    return {"step": 0, "model_state_dict": state}


def write_official_checkpoints(folder: str | Path, config: SATConfig, seed: int = 0,
                               names: tuple[str, str] = (SEGMENTATION_FILE, TEXT_ENCODER_FILE)) -> tuple[Path, Path]:
    """Write the two official `.pth` files (segmentation, text encoder) with random weights."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model, text = random_models(config, seed)
    seg_path, text_path = folder / names[0], folder / names[1]
    torch.save(official_segmentation_payload(model, seed), seg_path)
    del model
    torch.save(official_text_encoder_payload(text), text_path)
    return seg_path, text_path


def write_random_model_folder(path: str | Path, config: SATConfig, seed: int = 0) -> Path:
    """A complete model folder (sat_config.json + segmentation.pth + text_encoder.pth) with random weights."""
    folder = Path(path)
    write_official_checkpoints(folder, config, seed)
    config.save(folder)
    return folder


def _constant_views(state: dict[str, torch.Tensor], value: float) -> dict[str, torch.Tensor]:
    """Each tensor replaced by a stride-0 view of one number: the same keys, shapes and dtypes, a tiny file."""
    return {key: torch.full((1,), value, dtype=tensor.dtype).expand(tensor.shape) if tensor.dim()
            else torch.tensor(value, dtype=tensor.dtype) for key, tensor in state.items()}


def write_shape_only_segmentation(path: str | Path, config: SATConfig, value: float = 1.0) -> Path:
    """An official-layout segmentation checkpoint whose every weight is `value`.

    Full-size SAT-Nano/SAT-Pro files are 0.5-2 GB; this one holds every key with its real shape in a
    few tens of kB and reads (memory-mapped) like the real one, for tests of finding, classifying and
    strictly checking checkpoints (not for running the model).
    """
    with torch.device("meta"):
        payload = official_segmentation_payload(SATModel(config))
    payload["model_state_dict"] = _constant_views(payload["model_state_dict"], value)
    return _save(payload, path)


def write_shape_only_text_encoder(path: str | Path, config: SATConfig, value: float = 2.0) -> Path:
    """An official-layout text-encoder checkpoint whose every weight is `value` (see `write_shape_only_segmentation`)."""
    with torch.device("meta"):
        payload = official_text_encoder_payload(TextEncoder(config))
    payload["model_state_dict"] = _constant_views(payload["model_state_dict"], value)
    return _save(payload, path)


def _save(payload: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def peak_allocated_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes allocated on the CPU while `fn` runs, above what was allocated before (PyTorch's profiler
    records every allocation and free of its CPU allocator, oneDNN's buffers included)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak
