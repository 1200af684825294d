"""The pose network: a per-frame CNN encoder and a temporal model over the frames' embeddings.

    frames [B, T, 3, S, S] -> CNN (+ two coordinate channels: where in the frame matters, the body's
    height in the image is its root height) -> [B, T, E] -> temporal model (residual 1-D convolutions
    over time, dilations 1, 2, 4: +-14 frames of context, non-causal: a video is lifted whole)
    -> per frame: the targets (rlpf.lifting.targets, standardized) and their log-variance.

The per-frame head (the encoder alone) is trained too, so the encoder learns poses from one frame
and the temporal model learns what time adds (smooth height, consistent velocity). The predicted
log-variances are the per-frame confidence (trained with the Gaussian negative log-likelihood).
"""
from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    """Frames [N, 3, S, S] uint8-as-float (0-1) -> [N, E] embeddings."""

    def __init__(self, size: int, channels: tuple[int, ...], embed: int):
        super().__init__()
        layers, c_in, s = [], 5, size
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in, s = c, (s + 1) // 2
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c_in * s * s, embed), nn.ReLU(inplace=True))
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
        self.register_buffer("coords", torch.stack([ys, xs])[None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x, self.coords.expand(len(x), -1, -1, -1)], 1)
        return self.fc(self.conv(x))


class Temporal(nn.Module):
    """[B, T, E] -> [B, T, E]: residual dilated 1-D convolutions over time."""

    def __init__(self, embed: int, layers: int, kernel: int = 5):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv1d(embed, embed, kernel, padding=(kernel // 2) * 2 ** i, dilation=2 ** i),
                          nn.GELU(), nn.Conv1d(embed, embed, 1)) for i in range(layers))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = h.transpose(1, 2)
        for block in self.blocks:
            x = x + block(x)
        return x.transpose(1, 2)


class PoseNet(nn.Module):
    """Video frames -> per-frame targets and log-variances (``forward`` returns both heads)."""

    def __init__(self, size: int, n_targets: int, channels: tuple[int, ...] = (24, 48, 64, 96), embed: int = 192,
                 temporal_layers: int = 3):
        super().__init__()
        self.size, self.n_targets = size, n_targets
        self.encoder = Encoder(size, tuple(channels), embed)
        self.temporal = Temporal(embed, temporal_layers)
        self.frame_head = nn.Linear(embed, 2 * n_targets)
        self.head = nn.Linear(embed, 2 * n_targets)

    def forward(self, frames: torch.Tensor) -> dict:
        """frames [B, T, 3, S, S] float 0-1 -> {"mean", "logvar", "frame_mean", "frame_logvar"}: [B, T, D]."""
        B, T = frames.shape[:2]
        h = self.encoder(frames.reshape(B * T, *frames.shape[2:])).reshape(B, T, -1)
        per = self.frame_head(h)
        out = self.head(self.temporal(h))
        D = self.n_targets
        return {"mean": out[..., :D], "logvar": out[..., D:].clamp(-12, 6),
                "frame_mean": per[..., :D], "frame_logvar": per[..., D:].clamp(-12, 6)}
