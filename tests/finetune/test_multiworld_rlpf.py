"""RLPF on a multi-world world model: one LM over several Meta-World worlds, fine-tuned at once.

The codec decodes each completion in the world its codes lie in, and the feedback refuses one that is
not its prompt's world; each clip is scored in its own world (terms of other worlds' scenes are None
for it); `rlpf train` with `worlds` fine-tunes a tiny pretrained two-world model by real TRL GRPO
steps, saves it as a multi-world model, evaluates and reports per world and on the mean, resumes,
and refuses configs that cannot work (another world set, a one-world tracker)."""
import json
import math

import numpy as np
import pytest

from multiworld_models import DRAWER, PUSH, SHARED, WIN_CLOSE, WIN_OPEN, tiny_multiworld
from rlpf.cli import main
from rlpf.core.clips import load_clips
from rlpf.core.config import ConfigError
from rlpf.finetune.feedback import FeedbackError, PhysicalFeedback
from rlpf.worldmodel.codec import MultiWorldModelCodec, as_codec
from rlpf.worldmodel.model import UnknownPromptError
from rlpf.worldmodel.multiworld import MultiWorldModel


def test_codec_decodes_each_completion_in_the_world_of_its_codes():
    wm = tiny_multiworld()
    codec = as_codec(wm)
    assert isinstance(codec, MultiWorldModelCodec)
    codec.check()
    assert codec.worlds == [PUSH, DRAWER, WIN_OPEN, WIN_CLOSE] and codec.max_completion_length == wm.n_tokens
    allowed = set(codec.allowed_token_ids)
    assert all(wm.code_offsets[w] in allowed for w in wm.worlds) and wm.separator_id not in allowed
    marked = wm.prompt_text(SHARED, WIN_CLOSE)
    assert codec.prompt_text(marked) == marked and codec.world_of(marked) == WIN_CLOSE
    assert codec.command(marked) == SHARED and codec.world_of(SHARED) is None
    assert codec.prompt_text("open the drawer") == wm.prompt_text("open the drawer", DRAWER)
    with pytest.raises(UnknownPromptError, match="several worlds"):
        codec.prompt_text(SHARED)   # unmarked words of two worlds: no world to train it in
    assert set(wm.training_prompts()) >= {marked, wm.prompt_text(SHARED, WIN_OPEN)}

    n = wm.n_tokens
    push = [wm.code_offsets[PUSH] + i % wm.n_codes[PUSH] for i in range(n)]
    drawer = [wm.code_offsets[DRAWER] + 3] * n
    mixed = push[:-1] + [drawer[0]]
    out = codec.decode_batch([push, drawer, mixed, push[:-1]], ["a", "b", "c", "d"])
    assert (out[0].world, out[0].qpos.shape, out[0].prompt) == (PUSH, (16, 16), "a")
    assert (out[1].world, out[1].qpos.shape) == (DRAWER, (16, 10))
    assert "one world" in out[2] and f"expected {n}" in out[3]
    # the same codes decode to the same clip as the world's own tokenizer makes of them
    ref = wm.motion_tokenizers[DRAWER].decode_codes(np.array([[3] * n]), wm.fps)[0]
    assert np.allclose(out[1].qpos, ref)


def test_feedback_scores_each_clip_in_its_own_world():
    wm = tiny_multiworld(worlds=(PUSH, DRAWER))
    clips = wm.generate(["push the puck to a new spot", "open the drawer"], n=1, seed=0)
    weights = {"tracking_success": 10.0, "alignment": 2.0, "articulation_unexplained_mps": -5.0}
    with PhysicalFeedback([PUSH, DRAWER], weights, workers=0) as fb:
        assert fb.world_name is None and fb.worlds == [PUSH, DRAWER]
        assert {"object_unexplained_mps", "articulation_unexplained_mps"} <= set(fb.terms)
        scored = fb.score(clips)
        assert scored["errors"] == {}
        t = scored["terms"]
        assert all(math.isfinite(v) for v in t["tracking_success"] + t["alignment"])
        # a term about another world's scene says nothing about this clip: NaN (None to TRL), not 0
        assert math.isfinite(t["object_unexplained_mps"][0]) and math.isnan(t["object_unexplained_mps"][1])
        assert math.isnan(t["articulation_unexplained_mps"][0]) and math.isfinite(t["articulation_unexplained_mps"][1])
        # one world's clip scored by a one-world feedback gets the same numbers
        with PhysicalFeedback(DRAWER, weights, workers=0) as one:
            alone = one.score(clips[1:])["terms"]
        assert alone["tracking_success"][0] == t["tracking_success"][1]
        assert alone["articulation_unexplained_mps"][0] == pytest.approx(t["articulation_unexplained_mps"][1])

        codec = as_codec(wm)
        funcs, w = fb.reward_functions(codec)
        assert len(funcs) == len(fb.terms) and w[:2] == [10.0, 2.0]
        n = wm.n_tokens
        push_ids = [wm.code_offsets[PUSH] + 1] * n
        texts = [wm.prompt_text("push the puck to a new spot"), wm.prompt_text("open the drawer")]
        result = fb.score_completions(codec, texts, [push_ids, push_ids])
        assert set(result["errors"]) == {1} and "asks for 'metaworld/drawer-open-v3'" in result["errors"][1]
        assert math.isfinite(result["terms"]["tracking_success"][0])
        assert all(math.isnan(v[1]) for v in result["terms"].values())   # excluded, never half-scored
        assert fb.excluded_total == 1

        with pytest.raises(FeedbackError, match="not one of this feedback's worlds"):
            fb.score(tiny_multiworld(worlds=(WIN_OPEN,)).generate(SHARED, n=1, world=WIN_OPEN))
    with PhysicalFeedback(PUSH, weights, workers=0) as one:
        with pytest.raises(FeedbackError, match="world"):
            one.reward_functions(codec)
    with pytest.raises(FeedbackError, match="empty list"):
        PhysicalFeedback([], weights)
    with pytest.raises(FeedbackError, match="twice"):
        PhysicalFeedback([PUSH, PUSH], weights)


RLPF = ["method=rlpf", f"worlds=[{PUSH}, {DRAWER}]", "tracker=pd", "eval_trackers=[pd]",
        # tracking_error_m: a graded term, so a tiny model's clips (none tracked) still differ within a group
        "weights={tracking_success: 10.0, alignment: 2.0, tracking_error_m: -1.0}", "grpo.steps=2", "grpo.prompts_per_step=2",
        "grpo.num_generations=2", "grpo.steps_per_generation=1", "grpo.num_iterations=1", "grpo.save_steps=1",
        "grpo.warmup_steps=0", "grpo.learning_rate=0.01", "eval_per_prompt=2", "videos=1", "workers=0", "threads=1"]


@pytest.mark.slow
def test_rlpf_train_fine_tunes_a_multi_world_model_and_reports_per_world(multiworld_pretrain, tmp_path, capsys):
    root, _ = multiworld_pretrain
    base = root / "run"
    cfg = [f"base_run={base}", f"pretrain_config={base / 'config.yaml'}"]
    out = tmp_path / "rlpf"
    assert main(["train", "--out", str(out), "--quiet", *RLPF, *cfg]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["worlds"]) == {PUSH, DRAWER} and report["world"] == "several"
    for part in ("before", "after"):
        per = [report["worlds"][w][part]["tracking_success"] for w in (PUSH, DRAWER)]
        assert report[part]["tracking_success"] == pytest.approx(np.mean(per), abs=1e-4)
        assert report[part]["n_clips"] == sum(report["worlds"][w][part]["n_clips"] for w in (PUSH, DRAWER))
    assert report["training"]["steps"] == 2
    for w, stem in ((PUSH, "metaworld_push-v3"), (DRAWER, "metaworld_drawer-open-v3")):
        clips = load_clips(str(out / "samples" / f"rlpf-{stem}.npz"))
        assert {c.world for c in clips} == {w} and len(clips) == report["worlds"][w]["after"]["n_clips"]
    assert report["videos"] or report["video_errors"]
    assert "Per world" in (out / "report.md").read_text()
    # the fine-tuned model is a multi-world model like its base, with other weights
    tuned, before = MultiWorldModel.from_pretrained(str(out / "model")), MultiWorldModel.from_pretrained(str(base))
    assert tuned.worlds == before.worlds
    diff = max(float((a - b).detach().abs().max()) for a, b in zip(tuned.lm.parameters(), before.lm.parameters()))
    assert diff > 0
    # the run directory carries the MT10 control head as its base does (control_metaworld.yaml's head-rlpf)
    from rlpf.control.mt10_head import check_backbone

    assert check_backbone(str(out), ["push-v3", "drawer-open-v3", "reach-v3"]) == check_backbone(
        str(base), ["push-v3", "drawer-open-v3", "reach-v3"])
    # the same command again: finished, nothing retrained
    assert main(["train", "--out", str(out), "--quiet", *RLPF, *cfg]) == 0
    assert json.loads((out / "report.json").read_text())["after"] == report["after"]
    capsys.readouterr()


def test_multi_world_configs_that_cannot_work_are_refused(multiworld_pretrain, tmp_path):
    from rlpf.core.config import load_config
    from rlpf.finetune.pipeline import RLPFConfig, train_rlpf

    root, _ = multiworld_pretrain
    base = root / "run"
    with pytest.raises(ConfigError, match="learned tracker is one world's"):
        load_config(RLPFConfig, None, [*RLPF, "tracker=learned"])
    with pytest.raises(ConfigError, match="SFT-Filter"):
        load_config(RLPFConfig, None, [*RLPF, "method=sft_filter"])
    with pytest.raises(ConfigError, match="distinct"):
        load_config(RLPFConfig, None, [*RLPF, f"worlds=[{PUSH}, {PUSH}]"])
    one = load_config(RLPFConfig, None, [*RLPF, f"worlds=[{PUSH}]", f"base_run={base}",
                                          f"pretrain_config={base / 'config.yaml'}"])
    with pytest.raises(ConfigError, match="pretrains"):
        train_rlpf(one, str(tmp_path / "x"), progress=False)
    assert not (tmp_path / "x" / "config.yaml").exists()   # refused before anything was written
