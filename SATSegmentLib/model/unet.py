"""SAT's vision backbone: the vendored `PlainConvUNet` of dynamic-network-architectures (SAT_REFERENCE.md §1.2).

Module names reproduce the official state-dict keys exactly, including the `.all_modules.{0,1}`
aliases: each conv block registers its conv and norm twice, as the official code does.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import SATConfig


class ConvNormAct(nn.Module):
    """Conv3d -> InstanceNorm3d(affine) -> LeakyReLU, registered under both official names."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_ch, out_ch, kernel, stride, padding=(kernel - 1) // 2, bias=True)
        self.norm = nn.InstanceNorm3d(out_ch, eps=1e-5, affine=True, track_running_stats=False)
        self.nonlin = nn.LeakyReLU(0.01, inplace=True)
        self.all_modules = nn.Sequential(self.conv, self.norm, self.nonlin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.all_modules(x)


class StackedConvs(nn.Module):
    """`n` conv blocks; only the first one carries the stage stride."""

    def __init__(self, n: int, in_ch: int, out_ch: int, kernel: int, stride: int) -> None:
        super().__init__()
        blocks = [ConvNormAct(in_ch, out_ch, kernel, stride)]
        blocks += [ConvNormAct(out_ch, out_ch, kernel, 1) for _ in range(n - 1)]
        self.convs = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class Encoder(nn.Module):
    """Strided-conv encoder returning the output of every stage (full resolution first)."""

    def __init__(self, cfg: SATConfig) -> None:
        super().__init__()
        stages, in_ch = [], cfg.in_channels
        for feat, stride, n in zip(cfg.features_per_stage, cfg.strides, cfg.n_conv_per_stage):
            stages.append(nn.Sequential(StackedConvs(n, in_ch, feat, cfg.kernel_size, stride)))
            in_ch = feat
        self.stages = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips


class Decoder(nn.Module):
    """Transposed-conv decoder without segmentation layers; returns the full-resolution feature map."""

    def __init__(self, cfg: SATConfig) -> None:
        super().__init__()
        feats = cfg.features_per_stage
        n_dec = len(feats) - 1
        self.stages = nn.ModuleList(
            StackedConvs(cfg.n_conv_per_stage_decoder[s], 2 * feats[-(s + 2)], feats[-(s + 2)], cfg.kernel_size, 1)
            for s in range(n_dec)
        )
        self.transpconvs = nn.ModuleList(
            nn.ConvTranspose3d(feats[-(s + 1)], feats[-(s + 2)], cfg.strides[-(s + 1)], cfg.strides[-(s + 1)],
                               bias=True)
            for s in range(n_dec)
        )

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        """Consume `skips` (the encoder outputs; the list is emptied so maps are freed as soon as used)."""
        x = skips.pop()
        for transpconv, stage in zip(self.transpconvs, self.stages):
            x = torch.cat((transpconv(x), skips.pop()), dim=1)
            x = stage(x)
        return x


class PlainConvUNet(nn.Module):
    """Encoder + decoder; `forward` returns (encoder outputs, full-resolution decoder output)."""

    def __init__(self, cfg: SATConfig) -> None:
        super().__init__()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        skips = self.encoder(x)
        return list(skips), self.decoder(skips)
