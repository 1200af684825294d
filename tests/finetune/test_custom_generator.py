"""experiments/custom_generator.py: a tiny GPT-2 with its own vocabulary and pose codec, fine-tuned
by rlpf.RLPFTrainer on the ant world (real TRL GRPO, real MuJoCo scoring in a worker)."""
import math
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "experiments"))

import custom_generator  # noqa: E402


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("custom")
    return custom_generator.main(["--steps", "2", "--prompts-per-step", "2", "--generations", "2", "--poses", "16",
                                  "--tokens", "6", "--workers", "1", "--out", str(out / "trl")])


def test_the_generators_parameters_change(result):
    after = result["trainer"].model.state_dict()
    changed = [k for k, v in result["initial"].items() if not torch.equal(v, after[k].detach().cpu())]
    assert changed, "RLPFTrainer left every parameter of the GPT-2 untouched"


def test_every_reward_term_is_logged_and_the_total_is_their_weighted_sum(result, capsys):
    history, terms, weights = result["history"], result["terms"], result["weights"]
    assert len(history) == 2 and result["excluded"] == 0
    assert {"tracking_success", "alignment", "tracking_error_m", "skate_mps"} <= set(terms)
    assert weights["tracking_success"] == 10.0 and weights["skate_mps"] == 0.0  # logged, not optimized
    for h in history:
        for t in terms:
            assert f"rewards/{t}/mean" in h, (t, sorted(h))
        total = sum(w * h[f"rewards/{t}/mean"] for t, w in weights.items() if w)
        assert math.isclose(h["reward"], total, rel_tol=1e-5, abs_tol=1e-5), (h["reward"], total)
    # every completion was a clip: the codec only lets pose tokens be sampled
    assert all(not math.isnan(h["rewards/tracking_error_m/mean"]) for h in history)


def test_help_and_bad_flags(capsys):
    with pytest.raises(SystemExit) as e:
        custom_generator.main(["--help"])
    assert e.value.code == 0 and "--steps" in capsys.readouterr().out
    for bad in (["--steps", "0"], ["--generations", "1"], ["--workers", "-1"]):
        with pytest.raises(SystemExit) as e:
            custom_generator.main(bad)
        assert e.value.code == 2
        assert bad[0] in capsys.readouterr().err


def test_pose_codec_decodes_pose_tokens_and_refuses_others():
    _, codec, prompts = custom_generator.build(n_poses=8, n_tokens=4)
    codec.check()
    clip = codec.decode(codec.allowed_token_ids[:4], prompts[0])
    assert clip.qpos.shape == (4 * codec.frames_per_token, 15) and clip.world == "ant" and clip.prompt == prompts[0]
    assert codec.decode([codec.tokenizer.eos_token_id] * 4, prompts[0]) is None  # not a pose
    assert codec.decode(codec.allowed_token_ids[:3], prompts[0]) is None  # too short
    assert set(codec.suppress_tokens()).isdisjoint(codec.allowed_token_ids)
    assert len(codec.suppress_tokens()) + len(codec.allowed_token_ids) == len(codec.tokenizer)
