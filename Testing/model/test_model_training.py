"""Training sanity check: a tiny SAT learns to separate two organs of a real CT by text prompt alone.

Mirrors SAT's two training stages at toy scale: (1) knowledge pretraining makes the text embeddings
of different terms distinct (here a short contrastive step over a few anatomy terms), (2) the
segmentation model trains against the frozen text path (only `modality_embed` open, as in SAT).
Every step runs the real tokenizer, tiny MPNet, pooling, projection and modality embedding.
About one seed in seven falls into the "one union mask for every prompt" local minimum within 150
steps at this toy size, and float rounding differs between CPUs, so a run that lands there is
retried with the next seed (at most three): a broken conditioning path fails every seed.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from SATSegmentLib.model import SATConfig
from SATSegmentLib.model.testing import random_models

PROMPTS = {"liver": 5, "spleen": 1}  # TotalSegmentator v2 label values (total_v2_labels.json)
OTHER_TERMS = ["left kidney", "right kidney", "pancreas", "stomach", "aorta", "gallbladder"]


def ct_window(examples_dir, patch):
    """The small abdominal CT at 6x6x3 mm, SAT-normalised, zero-padded to one window; targets per prompt."""
    image = np.asarray(nib.load(examples_dir / "example_ct_sm.nii.gz").dataobj, dtype=np.float32)[::2, ::2]
    labels = np.asarray(nib.load(examples_dir / "example_seg.nii.gz").dataobj)[::2, ::2]
    image = np.clip(image, -500, 1000)
    image = (image - image.mean()) / image.std()
    x = torch.zeros(1, 3, *patch)
    y = torch.zeros(1, len(PROMPTS), *patch)
    region = tuple(slice(0, n) for n in image.shape)
    x[(0, slice(None), *region)] = torch.from_numpy(image)
    for i, value in enumerate(PROMPTS.values()):
        y[(0, i, *region)] = torch.from_numpy(labels == value)
    return x, y


def dice(pred, target):
    return (2 * (pred * target).sum((2, 3, 4)) + 1) / (pred.sum((2, 3, 4)) + target.sum((2, 3, 4)) + 1)


def pretrain_text(text, steps=40):
    """Stage 1 (stand-in for SAT's knowledge pretraining): embeddings of different terms become distinct
    and of unit scale per channel, like the features of a trained text encoder."""
    terms = list(PROMPTS) + OTHER_TERMS
    opt = torch.optim.Adam(text.parameters(), lr=3e-3)
    for _ in range(steps):
        e = text(terms, "ct")
        unit = F.normalize(e, dim=-1)
        off_diagonal = (unit @ unit.T)[~torch.eye(len(terms), dtype=torch.bool)]
        scale = e.norm(dim=-1) / e.shape[-1] ** 0.5
        loss = off_diagonal.clamp(min=0).pow(2).mean() + (scale - 1).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def train_and_score(examples_dir, seed: int) -> tuple[dict[str, float], float]:
    """Both stages from `seed`; returns the Dice per prompt and the best Dice with the prompts swapped."""
    torch.manual_seed(seed)
    cfg = SATConfig.tiny()
    model, text = random_models(cfg, seed=seed)
    torch.nn.init.normal_(text.modality_embed.weight, std=0.02)
    text.train()
    pretrain_text(text)
    with torch.no_grad():
        embeddings = text(list(PROMPTS), "ct")
    liver, spleen = F.normalize(embeddings, dim=-1)
    assert float(liver @ spleen) < 0.5
    assert embeddings.norm(dim=-1).min() > 0.5 * cfg.query_dim ** 0.5

    text.requires_grad_(False)
    text.modality_embed.requires_grad_(True)
    x, y = ct_window(examples_dir, cfg.patch_size)
    steps = 150
    opt = torch.optim.AdamW([*model.parameters(), text.modality_embed.weight], lr=5e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-3, total_steps=steps, pct_start=0.1)
    model.train()
    for _ in range(steps):
        logits = model(text(list(PROMPTS), "ct"), x)
        loss = F.binary_cross_entropy_with_logits(logits, y) + (1 - dice(torch.sigmoid(logits), y)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()

    model.eval()
    text.eval()
    with torch.no_grad():
        queries = text(list(PROMPTS), "ct")
        features = model.encode_image(x)
        masks = (model.decode(features, queries) > 0).float()
        swapped = (model.decode(features, queries.flip(0)) > 0).float()
    return dict(zip(PROMPTS, dice(masks, y)[0].tolist())), float(dice(swapped, y)[0].max())


@pytest.mark.slow
def test_tiny_sat_separates_liver_and_spleen_by_prompt(examples_dir):
    runs = []
    for seed in range(3):
        scores, swapped = train_and_score(examples_dir, seed)
        runs.append((seed, scores, swapped))
        # each organ found by its own prompt, and the prompt, not the image, decides which organ comes out
        if min(scores.values()) >= 0.7 and swapped < 0.3:
            return
    pytest.fail(f"no seed separated liver and spleen by prompt (seed, Dice, Dice with prompts swapped): {runs}")
