"""The frame tokenizer of the pixel world model: an FSQ autoencoder over low-resolution video.

    frames uint8 [B, T, S, S, 3] -> per-frame CNN (stride-2 convs S -> S/16) -> [B, T, E]
        -> strided 1-D conv over time (``downsample`` frames per step) -> ``groups`` latent vectors per
        step, each quantized by FSQ (``levels``) -> codes [B, T / downsample * groups]
    codes -> FSQ values -> transposed 1-D conv back to frames -> per-frame deconvolutions -> frames

One global latent per group, not a spatial grid: under the video contract the camera follows the
root, so a frame is the body's pose, its height and the floor's phase under it, which a few numbers
describe; a grid of codes would spend most of its tokens on the floor. The loss weighs the body's
pixels ``body_weight`` times a floor pixel (the body is a small part of the frame and all the lifting
reads; the contract's floor is grey, the body is coloured, so a pixel's saturation finds it).
GroupNorm, not BatchNorm: ``run_stage`` requires a forward pass that leaves the model's state as it
was (an interrupted step is saved as before it).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from rlpf.core.errors import CheckpointError
from rlpf.worldmodel.tokenizer import FSQ

CONFIG_FILE = "frame_tokenizer.json"
WEIGHTS_FILE = "frame_tokenizer.safetensors"


@dataclass
class FrameTokenizerConfig:
    """Shape of the frame tokenizer (``rlpf pixel`` fields ``tokenizer.*``)."""

    size: int = 64
    """Frame width and height in pixels (a multiple of 16; the pose lifter's input size)."""
    channels: tuple[int, ...] = (32, 64, 96, 128)
    """Channels of the four stride-2 convolutions (S -> S/16)."""
    embed: int = 256
    """Per-frame embedding width."""
    downsample: int = 4
    """Frames per latent step."""
    groups: int = 4
    """Codes per latent step (tokens per ``downsample`` frames)."""
    levels: tuple[int, ...] = (8, 5, 5, 5)
    """FSQ levels of each code's latent channels; the codebook size is their product."""
    body_weight: float = 8.0
    """Loss weight of a body pixel relative to a floor pixel."""

    def __post_init__(self):
        from rlpf.core.config import check

        self.channels, self.levels = tuple(int(c) for c in self.channels), tuple(int(v) for v in self.levels)
        check(self, self.size >= 16 and self.size % 16 == 0, "size", self.size, "a multiple of 16, >= 16")
        check(self, len(self.channels) == 4 and min(self.channels) >= 1, "channels", self.channels, "four positive widths")
        for name in ("embed", "downsample", "groups"):
            check(self, getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
        check(self, len(self.levels) >= 1 and min(self.levels) >= 2, "levels", self.levels, "integers >= 2")
        check(self, self.body_weight >= 1, "body_weight", self.body_weight, ">= 1")


def _act() -> nn.Module:
    return nn.GELU()


class FrameTokenizer(nn.Module):
    """Video frames <-> FSQ codes (``encode_frames`` / ``decode_codes``); ``loss`` trains it."""

    def __init__(self, world: str, cfg: FrameTokenizerConfig | None = None):
        super().__init__()
        self.world, self.cfg = world, cfg or FrameTokenizerConfig()
        c, S, E, D = self.cfg.channels, self.cfg.size, self.cfg.embed, self.cfg.downsample
        C = len(self.cfg.levels)
        self.grid = S // 16
        layers, c_in = [], 3
        for ch in c:
            layers += [nn.Conv2d(c_in, ch, 4, stride=2, padding=1), nn.GroupNorm(8 if ch % 8 == 0 else 1, ch), _act()]
            c_in = ch
        self.frame_enc = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c[-1] * self.grid ** 2, E), _act())
        self.time_enc = nn.Sequential(nn.Conv1d(E, E, D, stride=D), _act(), nn.Conv1d(E, E, 1), _act(),
                                      nn.Conv1d(E, self.cfg.groups * C, 1))
        self.fsq = FSQ(self.cfg.levels)
        self.time_dec = nn.Sequential(nn.Conv1d(self.cfg.groups * C, E, 1), _act(),
                                      nn.ConvTranspose1d(E, E, D, stride=D), _act(),
                                      nn.Conv1d(E, E, 3, padding=1), _act())
        self.frame_fc = nn.Sequential(nn.Linear(E, c[-1] * self.grid ** 2), _act())
        up, c_in = [], c[-1]
        for ch in list(reversed(c[:-1])) + [c[0]]:
            up += [nn.ConvTranspose2d(c_in, ch, 4, stride=2, padding=1), nn.GroupNorm(8 if ch % 8 == 0 else 1, ch), _act()]
            c_in = ch
        self.frame_dec = nn.Sequential(*up, nn.Conv2d(c_in, 3, 3, padding=1))

    # ---- sizes ------------------------------------------------------------------------------------
    @property
    def codebook_size(self) -> int:
        return self.fsq.size

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.groups

    def n_tokens(self, frames: int) -> int:
        """Codes of a video of ``frames`` frames (a multiple of downsample)."""
        return frames // self.cfg.downsample * self.cfg.groups

    # ---- tensors ----------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(quantized [B, L, G, C], codes [B, L * G]) from frames [B, T, 3, S, S] in [0, 1]."""
        B, T = x.shape[:2]
        self._check_frames(T)
        h = self.frame_enc(x.reshape(B * T, *x.shape[2:])).reshape(B, T, -1)
        z = self.time_enc(h.transpose(1, 2)).transpose(1, 2)            # [B, L, G*C]
        q, idx = self.fsq(z.reshape(B, z.shape[1], self.cfg.groups, -1))
        return q, idx.reshape(B, -1)

    def decode(self, q: torch.Tensor) -> torch.Tensor:
        """Frames [B, L * downsample, 3, S, S] (logits of [0, 1]) from quantized latents [B, L, G, C]."""
        B, L = q.shape[:2]
        h = self.time_dec(q.reshape(B, L, -1).transpose(1, 2)).transpose(1, 2)   # [B, T, E]
        T = h.shape[1]
        g = self.frame_fc(h.reshape(B * T, -1)).reshape(B * T, -1, self.grid, self.grid)
        return self.frame_dec(g).reshape(B, T, 3, self.cfg.size, self.cfg.size)

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Body-weighted reconstruction loss of frames [B, T, 3, S, S] in [0, 1]."""
        q, idx = self.encode(x)
        rec = torch.sigmoid(self.decode(q))
        body = body_mask(x)
        w = 1.0 + (self.cfg.body_weight - 1.0) * body
        err = (rec - x).abs()
        loss = (w * err).mean() / w.mean()
        body_err = (err * body).sum() / body.sum().clamp(min=1) / 3
        return loss, {"l1": err.mean().item(), "body_l1": body_err.item(),
                      "usage": torch.unique(idx).numel() / self.codebook_size}

    # ---- uint8 frames (numpy, no grad) -------------------------------------------------------------
    def encode_frames(self, frames, batch: int = 16) -> np.ndarray:
        """int64 codes [B, n_tokens] of uint8 frames [B, T, S, S, 3]."""
        f = np.asarray(frames)
        if f.ndim != 5 or f.shape[2:] != (self.cfg.size, self.cfg.size, 3):
            raise ValueError(f"frames must be [B, T, {self.cfg.size}, {self.cfg.size}, 3], got {f.shape}")
        out = []
        with _inference(self):
            for i in range(0, len(f), batch):
                out.append(self.encode(_to_tensor(f[i:i + batch]))[1].numpy())
        return np.concatenate(out)

    def decode_codes(self, codes, batch: int = 16) -> np.ndarray:
        """uint8 frames [B, T, S, S, 3] of codes [B, n_tokens]."""
        c = np.asarray(codes)
        G = self.cfg.groups
        if c.ndim != 2 or c.shape[1] == 0 or c.shape[1] % G:
            raise ValueError(f"codes must be [B, L * {G}] with L >= 1, got shape {c.shape}")
        if not np.issubdtype(c.dtype, np.integer) or (c < 0).any() or (c >= self.codebook_size).any():
            raise ValueError(f"codes must be integers in [0, {self.codebook_size})")
        out = []
        with _inference(self):
            for i in range(0, len(c), batch):
                part = torch.from_numpy(c[i:i + batch].astype(np.int64)).reshape(-1, c.shape[1] // G, G)
                x = torch.sigmoid(self.decode(self.fsq.from_index(part)))
                out.append((x.permute(0, 1, 3, 4, 2) * 255).round().to(torch.uint8).numpy())
        return np.concatenate(out)

    def _check_frames(self, t: int) -> None:
        if t == 0 or t % self.cfg.downsample:
            raise ValueError(f"video length {t} frames is not a positive multiple of downsample={self.cfg.downsample}")

    # ---- files ------------------------------------------------------------------------------------
    def save_pretrained(self, path: str) -> str:
        """frame_tokenizer.json (world, config) and frame_tokenizer.safetensors (weights) into ``path``."""
        from safetensors.torch import save_file

        os.makedirs(path, exist_ok=True)
        cfg = asdict(self.cfg)
        cfg["channels"], cfg["levels"] = list(self.cfg.channels), list(self.cfg.levels)
        weights, config = os.path.join(path, WEIGHTS_FILE), os.path.join(path, CONFIG_FILE)
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, weights + ".tmp")
        os.replace(weights + ".tmp", weights)
        with open(config + ".tmp", "w") as f:
            json.dump({"world": self.world, "cfg": cfg, "format": 1}, f, indent=1)
        os.replace(config + ".tmp", config)
        return path

    @classmethod
    def from_pretrained(cls, path: str) -> FrameTokenizer:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        config, weights = os.path.join(path, CONFIG_FILE), os.path.join(path, WEIGHTS_FILE)
        for p in (config, weights):
            if not os.path.isfile(p):
                raise CheckpointError(p, "not found (a frame tokenizer is saved with save_pretrained)")
        try:
            with open(config) as f:
                meta = json.load(f)
            tok = cls(str(meta["world"]), FrameTokenizerConfig(**meta["cfg"]))
            tok.load_state_dict(load_file(weights))
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
            raise CheckpointError(path, f"unreadable frame tokenizer ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        tok.eval()
        return tok


def body_mask(x: torch.Tensor) -> torch.Tensor:
    """1 where a pixel of frames [..., 3, S, S] in [0, 1] is coloured (the body), 0 on grey (the
    contract's floor): saturation max - min of the channels above 0.12, softened over 0.08-0.16."""
    sat = x.amax(-3, keepdim=True) - x.amin(-3, keepdim=True)
    return ((sat - 0.08) / 0.08).clamp(0, 1)


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 1, 4, 2, 3).float() / 255.0


class _inference:
    def __init__(self, module: nn.Module):
        self.module = module

    def __enter__(self):
        self.was, self.grad = self.module.training, torch.is_grad_enabled()
        self.module.eval()
        torch.set_grad_enabled(False)

    def __exit__(self, *exc):
        torch.set_grad_enabled(self.grad)
        self.module.train(self.was)
