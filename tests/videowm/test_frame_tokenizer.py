"""The frame tokenizer: shapes, codes in range, the round trip it learns, its files and bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rlpf.core.errors import CheckpointError
from rlpf.videowm.frame_tokenizer import FrameTokenizer, FrameTokenizerConfig, body_mask

CFG = dict(size=16, channels=(8, 8, 8, 8), embed=16, downsample=2, groups=2, levels=(4, 3))


def _videos(n=2, t=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, t, 16, 16, 3)).astype(np.uint8)


def test_codes_and_frames_have_the_documented_shapes():
    tok = FrameTokenizer("ant", FrameTokenizerConfig(**CFG))
    codes = tok.encode_frames(_videos())
    assert codes.shape == (2, tok.n_tokens(4)) == (2, 4) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < tok.codebook_size == 12
    frames = tok.decode_codes(codes)
    assert frames.shape == (2, 4, 16, 16, 3) and frames.dtype == np.uint8


def test_training_lowers_the_reconstruction_error():
    torch.manual_seed(0)
    tok = FrameTokenizer("ant", FrameTokenizerConfig(**CFG))
    x = torch.full((4, 4, 3, 16, 16), 0.5)
    for b in range(4):   # a coloured "body" moving over a grey floor
        for t in range(4):
            x[b, t, :, 4 + b:10 + b, 2 + 2 * t:8 + 2 * t] = torch.tensor([0.9, 0.2, 0.1])[:, None, None]
    opt = torch.optim.Adam(tok.parameters(), 3e-3)
    first = tok.loss(x)[0].item()
    for _ in range(80):
        loss, _ = tok.loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert tok.loss(x)[0].item() < 0.6 * first


def test_the_body_mask_finds_colour_not_grey():
    grey = torch.full((3, 4, 4), 0.5)
    red = torch.tensor([0.9, 0.2, 0.1])[:, None, None].expand(3, 4, 4)
    assert float(body_mask(grey).max()) == 0.0 and float(body_mask(red).min()) == 1.0


def test_save_and_load_round_trip_and_damage_is_named(tmp_path):
    tok = FrameTokenizer("ant", FrameTokenizerConfig(**CFG))
    tok.save_pretrained(str(tmp_path / "t"))
    back = FrameTokenizer.from_pretrained(str(tmp_path / "t"))
    v = _videos()
    assert np.array_equal(tok.encode_frames(v), back.encode_frames(v))
    (tmp_path / "t" / "frame_tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable frame tokenizer"):
        FrameTokenizer.from_pretrained(str(tmp_path / "t"))
    with pytest.raises(CheckpointError, match="not found"):
        FrameTokenizer.from_pretrained(str(tmp_path / "missing"))


def test_bad_frames_codes_and_configs_are_refused():
    from rlpf.core.config import ConfigError

    tok = FrameTokenizer("ant", FrameTokenizerConfig(**CFG))
    with pytest.raises(ValueError, match="frames must be"):
        tok.encode_frames(np.zeros((1, 4, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="multiple of downsample"):
        tok.encode_frames(np.zeros((1, 3, 16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="integers in"):
        tok.decode_codes(np.array([[0, 99]]))
    with pytest.raises(ValueError, match="codes must be"):
        tok.decode_codes(np.array([[0, 1, 2]]))
    with pytest.raises(ConfigError, match="size"):
        FrameTokenizerConfig(size=20)
    with pytest.raises(ConfigError, match="levels"):
        FrameTokenizerConfig(levels=(1, 5))
