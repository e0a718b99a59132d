"""Test doubles for the pipeline tests: models that implement SAT's encode_image/decode contract.

They are not SAT: they turn intensities into logits by a fixed rule, so geometry and blending can be
checked against an independent computation.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch


@dataclass
class IntensityFeatures:
    pixel: torch.Tensor

    @property
    def nbytes(self) -> int:
        return self.pixel.numel() * self.pixel.element_size()

    def to(self, device) -> "IntensityFeatures":
        return IntensityFeatures(self.pixel.to(device))


class IntensityModel(torch.nn.Module):
    """logit[n] = scale_n · (intensity − threshold_n) (+ a wiggle so probabilities vary inside windows).

    Queries are (N, 3): threshold, scale, wiggle. Counts backbone calls.
    """

    def __init__(self) -> None:
        super().__init__()
        self.encode_calls = 0

    def encode_image(self, x: torch.Tensor, plan=None) -> IntensityFeatures:
        self.encode_calls += 1
        assert x.shape[1] == 3 and torch.equal(x[:, 0], x[:, 2])
        return IntensityFeatures(x[:, :1].clone())

    def decode(self, features: IntensityFeatures, queries: torch.Tensor) -> torch.Tensor:
        p = features.pixel  # (B, 1, H, W, D)
        t, s, w = (queries[:, i].view(1, -1, 1, 1, 1) for i in range(3))
        return s * (p - t) + w * torch.sin(7.0 * p)


@pytest.fixture()
def intensity_model() -> IntensityModel:
    return IntensityModel()
