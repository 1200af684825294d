import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from rlpf.worldmodel import evaluator as me
from rlpf.policies.scripted import AntGait, SmoothRandom
from rlpf.data.simulate import simulate

TINY = me.EvaluatorConfig(embed_dim=16, hidden=32, word_dim=16, steps=60, batch=24, seed=0)
PROMPTS = {
    "walk with small steps": lambda: AntGait(amplitude=(0.1, 0.2), turn=(0, 0)),
    "turn left quickly": lambda: AntGait(amplitude=(0.4, 0.5), turn=(0.25, 0.3)),
    "flail randomly": lambda: SmoothRandom(0.6),
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # determinism across runs and fair sharing of a loaded machine
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def clips():
    out = []
    for k, (prompt, make) in enumerate(PROMPTS.items()):
        for i in range(8):
            c = simulate("ant", make(), 50, seed=7000 + 100 * k + i, prompt=prompt)
            out.append(dataclasses.replace(c, qpos=c.qpos[10:], actions=None))  # skip the drop from reset height
    return out


@pytest.fixture(scope="module")
def evaluator(clips):
    return me.train_evaluator(clips, "ant", TINY)


def test_fid_zero_for_same_set_and_grows_with_mean_shift(rng):
    x = rng.normal(size=(200, 8))
    assert me.fid(x, x) == pytest.approx(0.0, abs=1e-6)
    f = [me.fid(x, x + d) for d in (0.25, 0.5, 1.0)]
    assert f[0] < f[1] < f[2]
    assert f[2] == pytest.approx(8 * 1.0 ** 2, rel=1e-4)  # a pure shift adds |d|^2
    with pytest.raises(ValueError, match="N >= 2"):
        me.fid(x, x[:1])


def test_diversity_zero_for_identical_embeddings(rng):
    assert me.diversity(np.tile(rng.normal(size=(1, 8)), (30, 1))) == 0.0
    assert me.diversity(rng.normal(size=(30, 8))) > 1.0
    with pytest.raises(ValueError):
        me.diversity(np.zeros((1, 8)))


def test_mm_dist():
    m = np.eye(3)
    assert me.mm_dist(m, m) == 0.0
    assert me.mm_dist(m, -m) == pytest.approx(2.0)


def test_training_is_deterministic(clips, evaluator):
    losses = []
    again = me.train_evaluator(clips, "ant", TINY, progress=lambda step, loss: losses.append(loss))
    assert len(losses) == TINY.steps and losses[-1] < losses[0]
    np.testing.assert_array_equal(evaluator.embed_motions(clips[:5]), again.embed_motions(clips[:5]))
    other = me.train_evaluator(clips, "ant", dataclasses.replace(TINY, seed=1, steps=5))
    assert not np.allclose(evaluator.embed_motions(clips[:5]), other.embed_motions(clips[:5]))


def test_embeddings_unit_norm_and_independent_of_batch_and_length(clips, evaluator):
    short = dataclasses.replace(clips[0], qpos=clips[0].qpos[:17])
    alone = evaluator.embed_motions([short])
    together = evaluator.embed_motions([short, clips[1]])  # padded to the longer clip
    np.testing.assert_allclose(alone[0], together[0], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(evaluator.embed_texts(list(PROMPTS)), axis=1), 1.0, atol=1e-5)


def test_r_precision_beats_chance_on_training_data(clips, evaluator):
    emb = evaluator.embed_motions(clips)
    rp = me.r_precision(emb, [c.prompt for c in clips], evaluator)
    assert rp[1] > 0.6 > 1 / len(PROMPTS)
    assert rp[3] == 1.0  # three distinct prompts: top-3 always holds


def test_quality_metrics(clips, evaluator):
    m = me.quality_metrics(evaluator, clips[::2], clips[1::2])
    assert set(m) == {"fid", "diversity", "real_diversity", "r_precision_top1", "r_precision_top2",
                      "r_precision_top3", "mm_dist", "n_gen", "n_real"}
    collapsed = [dataclasses.replace(clips[0], prompt=c.prompt) for c in clips[::2]]
    mc = me.quality_metrics(evaluator, collapsed, clips[1::2])
    assert mc["diversity"] == 0.0 and mc["fid"] > m["fid"]
    with pytest.raises(ValueError, match="needs its prompt"):
        me.quality_metrics(evaluator, [dataclasses.replace(clips[0], prompt=None)] * 2, clips)


def test_unknown_word_lists_vocabulary(evaluator):
    with pytest.raises(ValueError, match=r"unknown words \['backwards'\].*'flail'"):
        evaluator.embed_texts(["walk backwards"])


def test_clip_checks(clips, evaluator):
    with pytest.raises(ValueError, match="fps"):
        evaluator.embed_motions([dataclasses.replace(clips[0], fps=30.0)])
    with pytest.raises(ValueError, match="trained on 'ant'"):
        evaluator.embed_motions([dataclasses.replace(clips[0], world="humanoid")])
    with pytest.raises(ValueError, match="at least 2 distinct prompts"):
        me.train_evaluator(clips[:3], "ant", TINY)


def test_save_load_round_trip(tmp_path, clips, evaluator):
    evaluator.save(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["motion_evaluator.json", "motion_evaluator.pt"]
    loaded = me.load(str(tmp_path), world="ant")
    np.testing.assert_array_equal(loaded.embed_motions(clips), evaluator.embed_motions(clips))
    np.testing.assert_array_equal(loaded.embed_texts(list(PROMPTS)), evaluator.embed_texts(list(PROMPTS)))
    assert loaded.cfg == TINY and loaded.vocab == evaluator.vocab
    with pytest.raises(ValueError, match="humanoid"):
        me.MotionTextEvaluator.load(str(tmp_path), world="humanoid")


def test_missing_and_corrupt_checkpoints(tmp_path, evaluator):
    with pytest.raises(FileNotFoundError, match="motion_evaluator.json"):
        me.MotionTextEvaluator.load(str(tmp_path))
    evaluator.save(str(tmp_path))
    weights, config = tmp_path / "motion_evaluator.pt", tmp_path / "motion_evaluator.json"
    good = config.read_text()
    config.write_text("{not json")
    with pytest.raises(ValueError, match=f"{config}: corrupt"):
        me.MotionTextEvaluator.load(str(tmp_path))
    config.write_text(json.dumps({**json.loads(good), "config": {"no_such_field": 1}}))
    with pytest.raises(ValueError, match=f"{config}: corrupt"):
        me.MotionTextEvaluator.load(str(tmp_path))
    config.write_text(good)
    weights.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=f"{weights}: corrupt"):
        me.MotionTextEvaluator.load(str(tmp_path))
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="motion_evaluator.pt"):
        me.MotionTextEvaluator.load(str(tmp_path))
