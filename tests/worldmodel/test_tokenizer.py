"""Motion tokenizer: FSQ codes, causality, a short training that must beat the untrained model, files and errors."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from rlpf.core.clips import Clip
from rlpf.core.config import field_doc
from rlpf.worldmodel.tokenizer import (CONFIG_FILE, FSQ, WEIGHTS_FILE, CheckpointError, MotionTokenizer, TokenizerConfig,
                                   clip_features, reconstruction_report, train_tokenizer)
from rlpf.policies.scripted import AntGait, PusherScript
from rlpf.data.simulate import simulate

TINY = dict(hidden=32, depth=1, levels=(5, 5, 5))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _settled(world, controller, seed, frames=64, drop=20):
    c = simulate(world, controller, frames + drop, seed=seed)
    return Clip(qpos=c.qpos[drop:], fps=c.fps, world=world, source=c.source)


@pytest.fixture(scope="module")
def ant_clips():
    return [_settled("ant", AntGait(), s) for s in range(6)]


@pytest.fixture(scope="module")
def trained(ant_clips):
    """(tokenizer, report before training, report after 200 steps) on the ant clips."""
    torch.manual_seed(0)
    tok = MotionTokenizer("ant", TokenizerConfig(**TINY))
    tok.fit_normalizer(np.concatenate(clip_features(tok, ant_clips)))
    before = reconstruction_report(tok, ant_clips)
    train_tokenizer(tok, ant_clips, steps=200, batch_size=16, window=32, lr=3e-3)
    return tok, before, reconstruction_report(tok, ant_clips)


def test_config_validation_and_docs():
    assert TokenizerConfig(levels=[8, 5]).levels == (8, 5)
    for bad in [dict(downsample=3), dict(downsample=0), dict(levels=[]), dict(levels=[8, 1]), dict(levels=5),
                dict(hidden=0), dict(kernel=1), dict(depth=-1), dict(root_weight=-1.0), dict(std_floor=0.0)]:
        with pytest.raises(ValueError):
            TokenizerConfig(**bad)
    assert all(field_doc(TokenizerConfig, f) for f in TokenizerConfig.__dataclass_fields__)  # every field has its --help


def test_fsq_index_round_trip_and_range():
    fsq = FSQ((8, 5, 3))
    assert fsq.size == 120
    idx = torch.arange(fsq.size)
    q = fsq.from_index(idx)
    assert q.min() >= -1 and q.max() <= 1
    assert torch.equal(fsq.to_index(q * fsq.half_width), idx)  # mixed radix is a bijection on the grid
    zq, codes = fsq(torch.randn(5000, 3, generator=torch.Generator().manual_seed(0)) * 1.5)
    assert codes.min() >= 0 and codes.max() < fsq.size
    assert len(torch.unique(codes)) == fsq.size  # every grid point, the edges of even levels included
    assert torch.allclose(fsq.from_index(codes), zq)
    z2 = torch.zeros(4, 3, requires_grad=True)
    fsq(z2)[0].sum().backward()
    assert (z2.grad != 0).all()  # straight-through: rounding does not stop the gradient


def test_encoder_and_decoder_are_causal():
    torch.manual_seed(0)
    tok = MotionTokenizer("ant", TokenizerConfig(**TINY)).eval()
    ds = tok.downsample
    x = torch.randn(2, 32, tok.features.dim)
    for t in (10, 12, 13):
        x2 = x.clone()
        x2[:, t:] += torch.randn_like(x2[:, t:])
        with torch.no_grad():
            z, z2 = tok.encoder(x.transpose(1, 2)), tok.encoder(x2.transpose(1, 2))
        assert torch.equal(z[..., :t // ds], z2[..., :t // ds]), t
        assert not torch.allclose(z[..., t // ds], z2[..., t // ds]), t  # the code holding frame t does change
        assert torch.equal(tok(x)[1][:, :t // ds], tok(x2)[1][:, :t // ds])
    codes = torch.randint(tok.codebook_size, (2, 8))
    for i in (1, 5):
        c2 = codes.clone()
        c2[:, i:] = (c2[:, i:] + 17) % tok.codebook_size
        with torch.no_grad():
            f, f2 = tok.decode_features(codes), tok.decode_features(c2)
        assert np.array_equal(f[:, :i * ds], f2[:, :i * ds])
        assert not np.allclose(f[:, i * ds], f2[:, i * ds])


def test_short_training_reconstructs(trained, ant_clips):
    tok, before, after = trained
    assert after["feature_mse"] < 0.4 * before["feature_mse"]
    assert after["joint_rad"] < 0.5 * before["joint_rad"] and after["joint_rad"] < 0.2
    assert after["root_pos_m"] < 0.5 * before["root_pos_m"]
    assert after["codebook_usage"] > 0.2 and 1 <= after["perplexity"] <= tok.codebook_size
    q = ant_clips[0].qpos
    codes = tok.encode_qpos(q, 20.0)
    assert codes.shape == (64 // tok.downsample,) and codes.dtype == np.int64
    rec = tok.decode_codes(codes, 20.0, start=q[0])
    assert rec.shape == q.shape
    assert np.allclose(rec[0, :2], q[0, :2])  # anchored at the start pose
    batch = tok.encode_qpos(np.stack([c.qpos for c in ant_clips[:2]]), 20.0)
    assert np.array_equal(batch[0], codes)
    assert tok.decode_codes(batch, 20.0).shape == (2, 64, tok.features.nq)


def test_length_and_code_errors(trained, ant_clips):
    tok = trained[0]
    with pytest.raises(ValueError, match="62 frames .*multiple of downsample=4"):
        tok.encode_qpos(ant_clips[0].qpos[:62], 20.0)
    with pytest.raises(ValueError, match="outside the codebook"):
        tok.decode_codes([[0, tok.codebook_size]], 20.0)
    with pytest.raises(ValueError, match="outside the codebook"):
        tok.decode_codes([-1], 20.0)
    with pytest.raises(ValueError, match="integers"):
        tok.decode_codes([0.5, 1.0], 20.0)
    with pytest.raises(ValueError, match="nq=15"):
        tok.encode_qpos(np.zeros((8, 11)), 20.0)


def test_save_load_round_trip(trained, ant_clips, tmp_path):
    tok = trained[0]
    d = tok.save_pretrained(str(tmp_path / "tok"))
    assert sorted(os.listdir(d)) == sorted([CONFIG_FILE, WEIGHTS_FILE])  # no temp files left behind
    meta = json.load(open(os.path.join(d, CONFIG_FILE)))
    assert meta["world"] == "ant" and meta["dim"] == tok.features.dim and meta["cfg"]["levels"] == [5, 5, 5]
    tok2 = MotionTokenizer.from_pretrained(d)
    assert torch.equal(tok2.mean, tok.mean) and torch.equal(tok2.std, tok.std)
    q = np.stack([c.qpos for c in ant_clips])
    codes = tok.encode_qpos(q, 20.0)
    assert np.array_equal(tok2.encode_qpos(q, 20.0), codes)
    assert np.array_equal(tok2.decode_codes(codes, 20.0), tok.decode_codes(codes, 20.0))


def test_load_errors(trained, tmp_path):
    tok = trained[0]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        MotionTokenizer.from_pretrained(str(tmp_path / "nowhere"))
    d = tok.save_pretrained(str(tmp_path / "tok"))
    weights, config = os.path.join(d, WEIGHTS_FILE), os.path.join(d, CONFIG_FILE)
    good_w, good_c = open(weights, "rb").read(), open(config).read()

    os.remove(weights)
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE):
        MotionTokenizer.from_pretrained(d)
    open(weights, "wb").write(good_w[: len(good_w) // 2])
    with pytest.raises(CheckpointError, match=f"{WEIGHTS_FILE}: unreadable"):
        MotionTokenizer.from_pretrained(d)
    open(weights, "wb").write(good_w)

    open(config, "w").write(good_c[:20])
    with pytest.raises(CheckpointError, match="invalid JSON"):
        MotionTokenizer.from_pretrained(d)
    meta = json.loads(good_c)
    json.dump(dict(meta, world="pusher"), open(config, "w"))
    with pytest.raises(CheckpointError, match="world 'pusher'"):
        MotionTokenizer.from_pretrained(d)
    json.dump(dict(meta, cfg=dict(meta["cfg"], hidden=48)), open(config, "w"))
    with pytest.raises(CheckpointError, match="size mismatch"):
        MotionTokenizer.from_pretrained(d)
    json.dump(dict(meta, cfg=dict(meta["cfg"], downsample=3)), open(config, "w"))
    with pytest.raises(CheckpointError, match="power of 2"):
        MotionTokenizer.from_pretrained(d)


def test_pusher_world():
    clips = [simulate("pusher", PusherScript(), 48, seed=s) for s in range(4)]
    torch.manual_seed(0)
    tok = MotionTokenizer("pusher", TokenizerConfig(**TINY))
    tok.fit_normalizer(np.concatenate(clip_features(tok, clips)))
    before = reconstruction_report(tok, clips)
    train_tokenizer(tok, clips, steps=120, batch_size=8, lr=3e-3)
    after = reconstruction_report(tok, clips)
    assert "root_pos_m" not in after and "object_pos_m" in after
    assert after["feature_mse"] < 0.5 * before["feature_mse"]
    assert after["joint_rad"] < before["joint_rad"]
    codes = tok.encode_qpos(clips[0].qpos, clips[0].fps)
    assert tok.decode_codes(codes, clips[0].fps).shape == clips[0].qpos.shape
    with pytest.raises(ValueError, match="world 'ant'"):
        reconstruction_report(tok, [Clip(qpos=np.zeros((8, 15)), fps=20.0, world="ant")])
