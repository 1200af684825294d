"""``rlpf pixel`` end to end at a tiny size: real renders, a real frame tokenizer, a real LM, real TRL
GRPO through decoding, pose lifting, tracking and physics terms; then its error paths."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from rlpf.cli import main

pytestmark = pytest.mark.slow   # a tiny pose run and a tiny `rlpf pixel` run, end to end through the CLI

POSE = ["clips=4", "frames=16", "steps=3", "window=8", "channels=[8,8]", "embed=16", "batch=2", "input_size=32",
        "checkpoint_every=2"]
TINY = ["data_n=20", "frames=16", "tokenizer.size=32", "tokenizer.channels=[8,8,8,8]", "tokenizer.embed=16",
        "tokenizer_steps=3", "tokenizer_window=8", "tokenizer_batch=2", "lm.hidden=16", "lm.layers=1", "lm.heads=2",
        "lm.intermediate=32", "lm_steps=3", "lm_batch=4", "grpo.steps=2", "grpo.prompts_per_step=2",
        "grpo.num_generations=2", "grpo.steps_per_generation=1", "grpo.num_iterations=1", "grpo.save_steps=1",
        "grpo.warmup_steps=0", "weights.alignment=3", "eval_per_prompt=1", "videos=1", "workers=0", "log_every=1", "ckpt_every=2"]


@pytest.fixture(scope="module")
def pixel_run(tmp_path_factory, no_rendering):
    from rlpf.viz.render import RenderError

    d = tmp_path_factory.mktemp("pixel")
    pose, run = str(d / "pose"), str(d / "run")
    try:
        assert main(["train-pose", "--world", "ant", "--out", pose, "--quiet", *POSE]) == 0
        rc = main(["pixel", "--out", run, "--quiet", f"pose_run={pose}", *TINY])
    except RenderError as e:
        no_rendering(e)
    assert rc == 0
    return pose, run


def test_the_chain_runs_and_reports_both_models(pixel_run):
    _, run = pixel_run
    report = json.load(open(os.path.join(run, "report.json")))
    for side in ("before", "after"):
        m = report[side]
        assert m["n_videos"] == 9   # one per ant prompt
        for k in ("tracking_success", "plausible_rate", "command_accuracy"):
            assert 0.0 <= m[k] <= 1.0
        assert m["video_fid"] >= 0 and m["diversity"] >= 0
    assert report["training"]["steps"] == 2
    # the configured reward reached TRL: each logged step's reward is the weighted sum of its terms
    assert report["weights"] == {"tracking_success": 10.0, "alignment": 3.0}
    assert "3 x alignment" in open(os.path.join(run, "report.md")).read()
    ckpt = max((n for n in os.listdir(os.path.join(run, "grpo")) if n.startswith("checkpoint-")),
               key=lambda n: int(n.split("-")[1]))
    logs = [h for h in json.load(open(os.path.join(run, "grpo", ckpt, "trainer_state.json")))["log_history"]
            if "reward" in h]
    assert logs
    for h in logs:
        assert h["reward"] == pytest.approx(10 * h["rewards/tracking_success/mean"] + 3 * h["rewards/alignment/mean"],
                                            abs=1e-4)
    assert os.path.isfile(os.path.join(run, "report.md"))
    assert any(f.startswith("base_") and f.endswith(".mp4") for f in os.listdir(os.path.join(run, "videos")))
    # TRL ran its steps, checkpointed and logged; the RLPF model is saved beside the base
    assert any(n.startswith("checkpoint-") for n in os.listdir(os.path.join(run, "grpo")))
    assert os.listdir(os.path.join(run, "tb", "rlpf"))
    assert os.path.isfile(os.path.join(run, "model", "world_model.json"))
    assert json.load(open(os.path.join(run, "model", "world_model.json")))["kind"] == "video"


def test_the_model_generates_videos_and_their_lifted_clips(pixel_run):
    from rlpf.core.clips import Clip
    from rlpf.worldmodel.codec import as_codec
    from rlpf.worldmodel.multiworld import load_world_model

    _, run = pixel_run
    wm = load_world_model(os.path.join(run, "model"))
    videos, clips = wm.generate_videos(["walk forward"], n=2, seed=3)
    assert videos.shape == (2, 16, 32, 32, 3) and videos.dtype == np.uint8
    assert all(isinstance(c, Clip) and c.qpos.shape == (16, 15) and c.prompt == "walk forward" for c in clips)
    again, _ = wm.generate_videos(["walk forward"], n=2, seed=3)
    assert np.array_equal(videos, again)   # seeded
    codec = as_codec(wm)
    ids = [wm.code_offset + 1] * wm.n_tokens
    out = codec.decode_batch([ids, ids[:-1], [0] * wm.n_tokens], ["walk forward"] * 3)
    assert isinstance(out[0], Clip) and "expected" in out[1] and "non-motion" in out[2]
    with pytest.raises(ValueError, match="first frames"):
        wm.generate(["walk forward"], first_frames=np.zeros((4, 15)))


def test_a_rerun_resumes_and_another_config_is_refused(pixel_run, capsys):
    pose, run = pixel_run
    before = os.path.getmtime(os.path.join(run, "report.json"))
    assert main(["pixel", "--out", run, "--quiet", f"pose_run={pose}", *TINY]) == 0
    assert os.path.getmtime(os.path.join(run, "report.json")) >= before
    assert main(["pixel", "--out", run, "--quiet", f"pose_run={pose}", *TINY, "lm_lr=0.5"]) == 2
    assert "different config" in capsys.readouterr().err


def test_bad_configs_and_a_damaged_model_name_the_problem(pixel_run, tmp_path, capsys):
    import shutil

    from rlpf.core.errors import CheckpointError
    from rlpf.videowm.model import VideoWorldModel
    from rlpf.worldmodel.model import WorldModel

    pose, run = pixel_run
    assert main(["pixel", "--out", str(tmp_path / "x"), "frames=18"]) == 2
    assert "frames" in capsys.readouterr().err
    assert main(["pixel", "--out", str(tmp_path / "y"), "tokenizer.size=40"]) == 2
    assert "size" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="pixel world model"):
        WorldModel.from_pretrained(os.path.join(run, "base"))
    broken = tmp_path / "broken"
    shutil.copytree(os.path.join(run, "base"), broken)
    (broken / "frame_tokenizer" / "frame_tokenizer.safetensors").write_bytes(b"not weights")
    with pytest.raises(CheckpointError, match="frame tokenizer"):
        VideoWorldModel.from_pretrained(str(broken))
    os.remove(broken / "pose" / "pose.json")
    (broken / "frame_tokenizer" / "frame_tokenizer.safetensors").unlink()
    shutil.copy(os.path.join(run, "base", "frame_tokenizer", "frame_tokenizer.safetensors"), broken / "frame_tokenizer")
    with pytest.raises(CheckpointError, match="pose lifter"):
        VideoWorldModel.from_pretrained(str(broken))
    from rlpf.lifting.inference import PoseLifter
    from rlpf.lifting.training import PoseRunError

    damaged_pose = tmp_path / "pose"
    shutil.copytree(pose, damaged_pose)
    (damaged_pose / "pose.safetensors").write_bytes(b"\x00" * 8 + b"not weights")
    with pytest.raises(PoseRunError, match="unreadable pose run"):
        PoseLifter.load(str(damaged_pose))
