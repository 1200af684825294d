"""The multi-world world model: one LM over several Meta-World worlds, each with its own tokenizer.

A tiny `rlpf pretrain` with `worlds` on two tasks of different scenes (push: a free puck, nq 16;
drawer-open: a slide, nq 10) from real expert clips, then `rlpf generate` per prompt: every clip is
in its prompt's world; the code ranges, the world markers, saving / loading and the error paths (a
prompt of no world, of two worlds, a one-world loader on a multi-world model)."""
import json

import numpy as np
import pytest

from rlpf.cli import main
from rlpf.core.clips import load_clips
from rlpf.core.errors import CheckpointError
from rlpf.worldmodel.model import UnknownPromptError, WorldModel
from rlpf.worldmodel.multiworld import MultiWorldModel, load_world_model, world_marker

from multiworld_models import DRAWER, PUSH, SHARED, TINY_PRETRAIN as TINY, WIN_CLOSE, tiny_multiworld


def test_vocabulary_gives_each_world_its_marker_and_code_range():
    wm = tiny_multiworld()
    vocab = wm.text_tokenizer.get_vocab()
    ranges = sorted((wm.code_offsets[w], wm.code_offsets[w] + wm.n_codes[w]) for w in wm.worlds)
    assert all(hi == lo2 for (_, hi), (lo2, _) in zip(ranges, ranges[1:]))   # disjoint, back to back
    assert len({vocab[world_marker(w)] for w in wm.worlds}) == 4
    ids = wm.prompt_ids("open the drawer")
    assert ids[:2] == [wm.text_tokenizer.bos_token_id, wm.marker_ids[DRAWER]] and ids[-1] == wm.separator_id
    seq = wm.sequence_ids("open the drawer", np.array([0, 15, 3, 2]), DRAWER)
    assert wm.world_of_ids(seq[len(ids):-1]) == DRAWER
    assert list(wm.codes_from_ids(seq[len(ids):-1])) == [0, 15, 3, 2]
    with pytest.raises(ValueError, match="one world"):
        wm.world_of_ids([wm.code_offsets[PUSH], wm.code_offsets[DRAWER]])


def test_generation_follows_the_prompts_world_and_reloads(tmp_path):
    wm = tiny_multiworld(tmp_path / "wm")
    clips = wm.generate(["push the puck to a new spot", "open the drawer"], n=2, seed=3)
    assert [(c.world, c.qpos.shape) for c in clips] == [(PUSH, (16, 16))] * 2 + [(DRAWER, (16, 10))] * 2
    shared = wm.generate(SHARED, n=1, world=WIN_CLOSE)
    assert shared[0].world == WIN_CLOSE and shared[0].prompt == SHARED
    loaded = load_world_model(str(tmp_path / "wm"))
    assert isinstance(loaded, MultiWorldModel) and loaded.worlds == wm.worlds
    assert loaded.task_prompts[PUSH] == "push the puck to a new spot"
    again = loaded.generate(["push the puck to a new spot", "open the drawer"], n=2, seed=3)
    assert all(np.allclose(a.qpos, b.qpos) for a, b in zip(clips, again))
    ff = clips[0].qpos[:8] + 0.01   # a start continued: its first 2 codes kept, anchored at its first frame
    cont = loaded.generate("push the puck to a new spot", n=2, first_frames=ff, seed=1)
    assert np.allclose(cont[0].qpos[0, 9:12], ff[0, 9:12], atol=1e-6)   # the puck starts where the start has it
    with pytest.raises(ValueError, match="nq=10"):
        loaded.generate("open the drawer", first_frames=ff)


def test_prompts_of_no_world_or_several_and_one_world_loaders_are_refused(tmp_path):
    wm = tiny_multiworld(tmp_path / "wm")
    with pytest.raises(UnknownPromptError, match="prompt of no world"):
        wm.generate("open the puck")            # known words, no world was trained on them
    with pytest.raises(UnknownPromptError, match=r"several worlds \['metaworld/window-open-v3', 'metaworld/window-close-v3'\]"):
        wm.generate(SHARED)
    with pytest.raises(UnknownPromptError, match="unknown word"):
        wm.generate("fly to the moon")
    with pytest.raises(UnknownPromptError, match="not one of this model's worlds"):
        wm.generate("open the drawer", world="metaworld/door-open-v3")
    with pytest.raises(CheckpointError, match="multi-world model"):
        WorldModel.from_pretrained(str(tmp_path / "wm"))
    with pytest.raises(CheckpointError, match="no world"):
        MultiWorldModel.from_pretrained(str(tmp_path / "wm"), worlds=["metaworld/reach-v3"])


@pytest.fixture(scope="module")
def run(multiworld_pretrain):
    return multiworld_pretrain


def test_pretrain_writes_one_tokenizer_and_evaluator_per_world_and_one_lm(run, capsys):
    root, data = run
    r = root / "run"
    for name in ("model/world_model.json", "tokenizers/metaworld_push-v3", "tokenizers/metaworld_drawer-open-v3",
                 "evaluators/metaworld_push-v3", "heldout/metaworld_drawer-open-v3.npz",
                 "checkpoints/tokenizer_metaworld_push-v3.pt", "checkpoints/lm.pt"):
        assert (r / name).exists(), name
    summary = json.loads((r / "pretrain_summary.json").read_text())
    assert summary["worlds"] == [PUSH, DRAWER] and summary["n_train"] + summary["n_heldout"] == 24
    assert set(summary["world_timings"]) == {PUSH, DRAWER}
    assert all(set(t) == {"data_s", "tokenizer_s", "evaluator_s"} for t in summary["world_timings"].values())
    lm = json.loads((r / "lm_report.json").read_text())
    assert lm["task_prompts"] == {PUSH: "push the puck to a new spot", DRAWER: "open the drawer"}
    assert lm["val_loss"] < np.log(lm["vocab"])   # it learned something in 30 steps
    wm = MultiWorldModel.from_pretrained(str(r))
    assert {w: len(t.features.names) > 0 for w, t in wm.motion_tokenizers.items()} == {PUSH: True, DRAWER: True}
    # the run resumes: nothing retrains
    assert main(["pretrain", "--out", str(r), "--quiet", *TINY, data]) == 0
    assert "multi-world (2 worlds)" in capsys.readouterr().out


def test_generate_per_prompt_gives_clips_of_the_prompts_world(run, capsys):
    root, _ = run
    out = root / "gen"
    assert main(["generate", "--checkpoint", str(root / "run"), "--prompt", "push the puck to a new spot",
                 "--prompt", "open the drawer partway", "--n", "3", "--out", str(out)]) == 0
    push = load_clips(str(out / "push_the_puck_to_a_new_spot.npz"))
    drawer = load_clips(str(out / "open_the_drawer_partway.npz"))
    assert {(c.world, c.qpos.shape) for c in push} == {(PUSH, (64, 16))}
    assert {(c.world, c.qpos.shape) for c in drawer} == {(DRAWER, (64, 10))}
    assert "in metaworld/drawer-open-v3" in capsys.readouterr().out
    assert main(["generate", "--checkpoint", str(root / "run"), "--prompt", "open the puck", "--out", str(root / "g2")]) == 2
    assert "prompt of no world" in capsys.readouterr().err


def test_multi_world_config_errors_name_the_field():
    from rlpf.core.config import ConfigError, load_config
    from rlpf.worldmodel.pretrain import PretrainConfig

    with pytest.raises(ConfigError, match="data_dirs"):
        load_config(PretrainConfig, None, [f"worlds=[{PUSH}]", f"data_dirs={{{DRAWER}: /tmp/x}}"])
    with pytest.raises(ConfigError, match="worlds"):
        load_config(PretrainConfig, None, [f"worlds=[{PUSH}, {PUSH}]"])
    cfg = load_config(PretrainConfig, "experiments/configs/metaworld_mt10.yaml", [])
    assert len(cfg.worlds) == 9 and "metaworld/reach-v3" not in cfg.worlds   # reach has no labelled data
    assert cfg.for_world(PUSH).data_dir == load_config(
        PretrainConfig, "experiments/configs/metaworld_push.yaml", []).data_dir   # the one-world run's cache
