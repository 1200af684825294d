"""Generation-quality metrics in a learned motion-text space, independent of the physics reward.

A generator fine-tuned on a physics reward can learn to please the reward and stop following the
prompt (stand still, repeat one safe motion). HumanML3D-style metrics catch that, so we train a
small motion-text evaluator on real clips once, then compare generated clips with real ones:

    fid          Fréchet distance between Gaussians fitted to real and generated motion embeddings
    diversity    mean distance between random pairs of generated clips (0 when all are alike)
    r_precision  how often a clip's own prompt is among the k text embeddings nearest to it
    mm_dist      mean distance between each clip and the embedding of its prompt

The evaluator (``MotionTextEvaluator``) has a motion encoder — dilated 1D convolutions over the
clip's ``MotionFeatures`` and their frame differences, normalized, then mean+max pooled over the
clip's own frames (padding masked), so any clip length works and no cropping is needed —
and a text encoder (mean word embedding + MLP over the training prompts' vocabulary). Both give
L2-normalized embeddings and are trained contrastively; clips sharing a prompt are all positives.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from rlpf.core.clips import Clip
from rlpf.worldmodel.features import MotionFeatures
from rlpf.core.errors import CheckpointError

CONFIG_FILE = "motion_evaluator.json"
WEIGHTS_FILE = "motion_evaluator.pt"
FORMAT = 1


@dataclass
class EvaluatorConfig:
    embed_dim: int = 32
    """Size of the shared (L2-normalized) motion/text embedding."""
    hidden: int = 64
    """Channels of the motion convolutions and width of the encoder MLPs."""
    word_dim: int = 32
    """Size of the word embeddings."""
    steps: int = 400
    """Optimizer steps (one random batch of clips each)."""
    lr: float = 2e-3
    """AdamW learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    batch: int = 64
    """Clips per batch; the distinct prompts among them are the text side of the contrastive loss."""
    temperature: float = 0.1
    """Softmax temperature of the contrastive logits (cosine similarity / temperature)."""
    min_crop: float = 0.5
    """Training sees random windows of at least this fraction of each clip, so embeddings do not hinge on length."""
    seed: int = 0
    """Seeds the initialization, batches and crops: same seed and data, same evaluator."""

    def __post_init__(self):
        from rlpf.core.config import check, finite

        for name in ("embed_dim", "hidden", "word_dim", "steps"):
            check(self, getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
        check(self, self.batch >= 2, "batch", self.batch, ">= 2 (the contrastive loss compares clips)")
        for name in ("lr", "temperature"):
            check(self, finite(getattr(self, name)) and getattr(self, name) > 0, name, getattr(self, name), "finite and > 0")
        check(self, finite(self.weight_decay) and self.weight_decay >= 0, "weight_decay", self.weight_decay, "finite and >= 0")
        check(self, finite(self.min_crop) and 0 < self.min_crop <= 1, "min_crop", self.min_crop, "in (0, 1]")


def tokenize(prompt: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", prompt.lower())


class MotionTextEvaluator(nn.Module):
    """Motion and text encoders into one L2-normalized embedding space, for one world and frame rate."""

    def __init__(self, world: str, fps: float, vocab: Sequence[str], cfg: EvaluatorConfig | None = None):
        super().__init__()
        self.cfg = cfg or EvaluatorConfig()
        self.features = MotionFeatures(world)
        self.world, self.fps, self.vocab = self.features.world, float(fps), list(vocab)
        self.word_index = {w: i for i, w in enumerate(self.vocab)}
        c, d = self.cfg, 3 * self.features.dim
        self.register_buffer("feat_mean", torch.zeros(d))
        self.register_buffer("feat_std", torch.ones(d))
        # dilations 1, 2, 4: a 29-frame receptive field covers a full gait cycle at 20 fps
        self.convs = nn.ModuleList(nn.Conv1d(d if i == 0 else c.hidden, c.hidden, 5, padding=2 * 2 ** i, dilation=2 ** i)
                                   for i in range(3))
        self.motion_head = nn.Sequential(nn.Linear(2 * c.hidden, c.hidden), nn.GELU(), nn.Linear(c.hidden, c.embed_dim))
        self.words = nn.EmbeddingBag(len(self.vocab), c.word_dim, mode="mean")
        self.text_head = nn.Sequential(nn.Linear(c.word_dim, c.hidden), nn.GELU(), nn.Linear(c.hidden, c.embed_dim))

    # ---- encoders -------------------------------------------------------------------------------
    def encode_features(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Normalized features [B, T, dim] with a validity mask [B, T] (padding after each clip) -> [B, D]."""
        m = mask[:, None, :].to(x.dtype)
        h = x.transpose(1, 2)
        for conv in self.convs:
            # zeroing the padding keeps a clip's embedding independent of the batch it is padded into
            h = F.gelu(conv(h)) * m
        mean = h.sum(-1) / m.sum(-1)
        peak = h.masked_fill(m == 0, float("-inf")).amax(-1)
        return F.normalize(self.motion_head(torch.cat([mean, peak], -1)), dim=-1)

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        ids, offsets = [], []
        for p in prompts:
            words = tokenize(p)
            unknown = [w for w in words if w not in self.word_index]
            if unknown or not words:
                raise ValueError(f"prompt {p!r}: {'unknown words ' + str(unknown) if unknown else 'no words'}; "
                                 f"the evaluator knows only the words of its training prompts: {self.vocab}")
            offsets.append(len(ids))
            ids += [self.word_index[w] for w in words]
        z = self.words(torch.tensor(ids), torch.tensor(offsets))
        return F.normalize(self.text_head(z), dim=-1)

    def clip_features(self, clip: Clip) -> np.ndarray:
        """Normalized ``motion_channels`` [T, 3 dim] of one clip, after checking it fits this evaluator."""
        self.check_world(clip.world or self.world, what=f"clip {clip.source}")
        if abs(clip.fps - self.fps) > 1e-6 * self.fps:
            raise ValueError(f"clip {clip.source}: fps {clip.fps} but the evaluator was trained at {self.fps} fps "
                             "(features hold velocities, so resample the clip first)")
        q = np.asarray(clip.qpos, np.float64)
        if q.ndim != 2 or q.shape[0] < 2 or not np.isfinite(q).all():
            raise ValueError(f"clip {clip.source}: qpos must be finite [T >= 2, nq], got shape {q.shape}")
        f = motion_channels(self.features.encode(q, clip.fps))
        return ((f - self.feat_mean.numpy()) / self.feat_std.numpy()).astype(np.float32)

    def check_world(self, world: str, what: str = "data") -> None:
        """Raise ValueError if ``world`` (a world name, as in Clip.world) is not the evaluator's world."""
        if world != self.world:
            raise ValueError(f"{what} is for world {world!r} but the motion evaluator was trained on {self.world!r}")

    # ---- numpy API ------------------------------------------------------------------------------
    @torch.no_grad()
    def embed_motions(self, clips: Sequence[Clip], batch: int = 256) -> np.ndarray:
        """Embeddings [N, D] of clips of any length."""
        self.eval()
        feats = [self.clip_features(c) for c in clips]
        out = [self.encode_features(*_pad(feats[i:i + batch])) for i in range(0, len(feats), batch)]
        return torch.cat(out).double().numpy() if out else np.zeros((0, self.cfg.embed_dim))

    @torch.no_grad()
    def embed_texts(self, prompts: Sequence[str]) -> np.ndarray:
        """Embeddings [N, D] of prompts; words outside the training vocabulary raise ValueError."""
        self.eval()
        return self.encode_prompts(list(prompts)).double().numpy() if len(prompts) else np.zeros((0, self.cfg.embed_dim))

    # ---- checkpoint -----------------------------------------------------------------------------
    def save(self, directory: str) -> str:
        """Write ``motion_evaluator.json`` (world, fps, vocab, config) and ``motion_evaluator.pt`` (weights)."""
        os.makedirs(directory, exist_ok=True)
        meta = {"format": FORMAT, "world": self.world, "fps": self.fps, "vocab": self.vocab,
                "config": dataclasses.asdict(self.cfg)}
        wpath, cpath = os.path.join(directory, WEIGHTS_FILE), os.path.join(directory, CONFIG_FILE)
        torch.save(self.state_dict(), wpath + ".tmp")
        os.replace(wpath + ".tmp", wpath)  # weights first: a json on disk always has its weights
        with open(cpath + ".tmp", "w") as f:
            json.dump(meta, f, indent=1)
        os.replace(cpath + ".tmp", cpath)
        return directory

    @classmethod
    def load(cls, directory: str, world: str | None = None) -> "MotionTextEvaluator":
        """Load a saved evaluator; ``world`` (optional) must match the one it was trained on."""
        cpath, wpath = os.path.join(directory, CONFIG_FILE), os.path.join(directory, WEIGHTS_FILE)
        for p in (cpath, wpath):
            if not os.path.exists(p):
                raise FileNotFoundError(f"{p}: motion evaluator checkpoint file not found (train_evaluator(...).save(dir) writes it)")
        try:
            with open(cpath) as f:
                meta = json.load(f)
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT}")
            cfg = EvaluatorConfig(**meta["config"])
            model = cls(meta["world"], meta["fps"], meta["vocab"], cfg)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(cpath, f"corrupt motion evaluator config ({type(e).__name__}: {e})") from None
        try:
            model.load_state_dict(torch.load(wpath, map_location="cpu", weights_only=True))
        except Exception as e:  # torch raises assorted types (pickle, zip, RuntimeError) for a bad file
            raise CheckpointError(wpath, f"corrupt motion evaluator weights ({type(e).__name__}: {str(e)[:200]})") from None
        if world is not None:
            model.check_world(world, what=f"requested world {world!r}")
        return model.eval()


def motion_channels(f: np.ndarray) -> np.ndarray:
    """Features [T, dim] with their first and second frame differences appended -> [T, 3 dim].

    Contrastive training only keeps what tells prompts apart; explicit differences (as HumanML3D's
    local joint velocities) make jitter and broken timing big inputs the embedding cannot ignore.
    """
    d1 = np.diff(f, axis=0, append=f[-1:])
    d2 = np.diff(d1, axis=0, append=d1[-1:])
    return np.concatenate([f, d1, d2], axis=1)


def load(directory: str, world: str | None = None) -> MotionTextEvaluator:
    """``MotionTextEvaluator.load``: a saved evaluator, checked against ``world`` when given."""
    return MotionTextEvaluator.load(directory, world)


def _pad(feats: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad [T_i, dim] arrays to [B, T_max, dim] with a mask of the real frames."""
    t = max(len(f) for f in feats)
    x = np.zeros((len(feats), t, feats[0].shape[1]), np.float32)
    mask = np.zeros((len(feats), t), bool)
    for i, f in enumerate(feats):
        x[i, :len(f)], mask[i, :len(f)] = f, True
    return torch.from_numpy(x), torch.from_numpy(mask)


def train_evaluator(clips: Sequence[Clip], world: str, cfg: EvaluatorConfig | None = None,
                    progress: Callable[[int, float], None] | bool | None = None) -> MotionTextEvaluator:
    """Train on prompted clips of one world and frame rate; deterministic for a seed (on one thread count).

    Loss per batch: cross-entropy of each clip over the batch's distinct prompts, plus for each prompt
    the mean log-softmax (over the batch's clips) of its clips — supervised contrastive, since many
    clips share one prompt. ``progress``: a callable gets ``(step, loss)`` after every step; True shows
    a tqdm bar.
    """
    cfg = cfg or EvaluatorConfig()
    clips = list(clips)
    if any(c.prompt is None or not c.prompt.strip() for c in clips):
        raise ValueError("train_evaluator: every clip needs a prompt")
    prompts = sorted({c.prompt for c in clips})
    if len(prompts) < 2:
        raise ValueError(f"train_evaluator: need at least 2 distinct prompts to contrast, got {prompts}")
    fps = {c.fps for c in clips}
    if len(fps) != 1:
        raise ValueError(f"train_evaluator: clips must share one frame rate, got {sorted(fps)}")
    vocab = sorted({w for p in prompts for w in tokenize(p)})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = MotionTextEvaluator(world, fps.pop(), vocab, cfg)
    frames = np.concatenate([model.clip_features(c) for c in clips]).astype(np.float64)  # buffers still 0 and 1
    model.feat_mean.copy_(torch.from_numpy(frames.mean(0)))
    # a floor keeps constant coordinates (fixed goals, static objects) from exploding when they move
    model.feat_std.copy_(torch.from_numpy(np.maximum(frames.std(0), 1e-3)))
    feats = [model.clip_features(c) for c in clips]  # now normalized
    pid = np.array([prompts.index(c.prompt) for c in clips])
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    bar = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc="training motion evaluator", unit="step", leave=False)
    model.train()
    for step in range(cfg.steps):
        idx = rng.choice(len(clips), size=min(cfg.batch, len(clips)), replace=False)
        crops = []
        for i in idx:
            t = len(feats[i])
            n = rng.integers(min(t, max(2, int(np.ceil(cfg.min_crop * t)))), t + 1)
            s = rng.integers(0, t - n + 1)
            crops.append(feats[i][s:s + n])
        zm = model.encode_features(*_pad(crops))
        uniq, inv = np.unique(pid[idx], return_inverse=True)
        zt = model.encode_prompts([prompts[u] for u in uniq])
        logits = zm @ zt.T / cfg.temperature  # [B, U]
        target = torch.from_numpy(inv)
        loss_motion = F.cross_entropy(logits, target)
        pos = (target[None, :] == torch.arange(len(uniq))[:, None]).float()  # [U, B]
        loss_text = -((F.log_softmax(logits.T, dim=1) * pos).sum(1) / pos.sum(1)).mean()
        loss = (loss_motion + loss_text) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        value = loss.item()
        if bar is not None:
            bar.update()
            bar.set_postfix(loss=f"{value:.3f}", refresh=False)
        elif callable(progress):
            progress(step, value)
    if bar is not None:
        bar.close()
    return model.eval()


# ---- metrics (numpy / scipy) ----------------------------------------------------------------------
def _check(emb: np.ndarray, name: str, min_n: int = 2) -> np.ndarray:
    emb = np.asarray(emb, np.float64)
    if emb.ndim != 2 or emb.shape[0] < min_n:
        raise ValueError(f"{name}: need an [N >= {min_n}, D] array of embeddings, got shape {emb.shape}")
    return emb


def fid(real_emb: np.ndarray, gen_emb: np.ndarray) -> float:
    """Fréchet distance |mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2)) of Gaussians fitted to two sets.

    0 for identical sets; grows with a mean shift and with any covariance mismatch (e.g. collapse).
    """
    r, g = _check(real_emb, "fid real"), _check(gen_emb, "fid generated")
    if r.shape[1] != g.shape[1]:
        raise ValueError(f"fid: embedding widths differ ({r.shape[1]} vs {g.shape[1]})")
    mu_r, mu_g = r.mean(0), g.mean(0)
    s_r, s_g = np.atleast_2d(np.cov(r, rowvar=False)), np.atleast_2d(np.cov(g, rowvar=False))
    with warnings.catch_warnings():  # a singular product (a collapsed set) is handled below
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(s_r @ s_g)
    if not np.isfinite(covmean).all():  # singular product (few samples): regularize, as pytorch-fid does
        eps = 1e-6 * np.eye(len(s_r))
        covmean = scipy.linalg.sqrtm((s_r + eps) @ (s_g + eps))
    value = float(np.sum((mu_r - mu_g) ** 2) + np.trace(s_r) + np.trace(s_g) - 2 * np.trace(covmean.real))
    return max(value, 0.0)  # sqrtm round-off can leave a tiny negative for identical sets


def diversity(emb: np.ndarray, n_pairs: int = 300, seed: int = 0) -> float:
    """Mean Euclidean distance over ``n_pairs`` random pairs of distinct clips (HumanML3D's Diversity).

    Pairs are drawn with replacement but never pair a clip with itself, so a set of N identical
    embeddings gives exactly 0 and small sets work.
    """
    e = _check(emb, "diversity")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(e), n_pairs)
    j = (i + rng.integers(1, len(e), n_pairs)) % len(e)
    return float(np.linalg.norm(e[i] - e[j], axis=1).mean())


def r_precision(motion_emb: np.ndarray, prompts: Sequence[str], evaluator: MotionTextEvaluator,
                top_k: Sequence[int] = (1, 2, 3)) -> dict[int, float]:
    """Fraction of clips whose own prompt is among the k prompts nearest to the clip's embedding.

    HumanML3D ranks each clip's text against 31 random mismatched descriptions (pools of 32); our
    datasets have only a handful of distinct prompts, so each clip ranks all distinct prompts of the
    evaluated set instead. Chance level is k / (number of distinct prompts); top-k is 1 when k
    reaches that number.
    """
    m = _check(motion_emb, "r_precision", min_n=1)
    if len(prompts) != len(m):
        raise ValueError(f"r_precision: {len(m)} embeddings but {len(prompts)} prompts")
    distinct = sorted(set(prompts))
    text = evaluator.embed_texts(distinct)
    dist = np.linalg.norm(m[:, None, :] - text[None, :, :], axis=-1)  # [N, P]
    own = dist[np.arange(len(m)), [distinct.index(p) for p in prompts]]
    rank = (dist < own[:, None]).sum(1)  # ties count in the clip's favour
    return {k: float(np.mean(rank < k)) for k in top_k}


def mm_dist(motion_emb: np.ndarray, text_emb: np.ndarray) -> float:
    """Multimodal distance: mean Euclidean distance between each clip's embedding and its prompt's."""
    m, t = _check(motion_emb, "mm_dist", 1), _check(text_emb, "mm_dist", 1)
    if m.shape != t.shape:
        raise ValueError(f"mm_dist: motion and text embeddings differ in shape ({m.shape} vs {t.shape})")
    return float(np.linalg.norm(m - t, axis=1).mean())


def quality_metrics(evaluator: MotionTextEvaluator, gen_clips: Sequence[Clip], real_clips: Sequence[Clip],
                    seed: int = 0) -> dict:
    """All metrics of generated clips (which need prompts) against real ones, in the evaluator's space."""
    gen_clips, real_clips = list(gen_clips), list(real_clips)
    if any(c.prompt is None for c in gen_clips):
        raise ValueError("quality_metrics: every generated clip needs its prompt (for R-precision and MM-dist)")
    gen, real = evaluator.embed_motions(gen_clips), evaluator.embed_motions(real_clips)
    prompts = [c.prompt for c in gen_clips]
    rp = r_precision(gen, prompts, evaluator, (1, 2, 3))
    return {
        "fid": fid(real, gen),
        "diversity": diversity(gen, seed=seed),
        "real_diversity": diversity(real, seed=seed),
        **{f"r_precision_top{k}": v for k, v in rp.items()},
        "mm_dist": mm_dist(gen, evaluator.embed_texts(prompts)),
        "n_gen": len(gen_clips),
        "n_real": len(real_clips),
    }
