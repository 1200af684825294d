"""rlpf pretrain / generate / evaluate end to end on a tiny config (seconds, not minutes)."""
import json
import os

import numpy as np
import pytest
import torch

from rlpf.cli import main
from rlpf.core.clips import load_clips, save_clips
from rlpf.core.config import ConfigError, load_config
from rlpf.worldmodel.pretrain import PretrainConfig, pretrain

TINY = ["frames=16", "data_n=27", "tokenizer_steps=12", "lm_steps=12", "log_every=4", "ckpt_every=4",
        "tokenizer.hidden=16", "tokenizer.depth=1", "tokenizer.levels=[4,4]", "tokenizer_batch=8", "tokenizer_window=8",
        "lm.hidden=32", "lm.layers=1", "lm.heads=2", "lm.intermediate=64", "lm_batch=8",
        "evaluator.steps=10", "evaluator.hidden=16", "evaluator.batch=16", "val_fraction=0.3"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    overrides = TINY + [f"data={root / 'data'}"]
    cfg = load_config(PretrainConfig, None, overrides)
    summary = pretrain(cfg, str(root / "run"), progress=False)
    return root, cfg, overrides, summary


def test_run_directory_holds_everything(run):
    root, cfg, _, summary = run
    r = root / "run"
    for name in ("config.yaml", "model", "tokenizer", "evaluator", "heldout.npz", "pretrain_summary.json",
                 "checkpoints/tokenizer.pt", "checkpoints/lm.pt"):
        assert (r / name).exists(), name
    for stage in ("tokenizer", "lm"):
        assert any(f.startswith("events") for f in os.listdir(r / "tb" / stage))
    assert summary["n_train"] + summary["n_heldout"] == 27
    assert summary["n_artifacts"] == round(cfg.artifacts * summary["n_train"]) > 0  # the default artifact mix
    assert load_config(PretrainConfig, str(r / "config.yaml")) == cfg
    assert all(c.prompt for c in load_clips(str(r / "heldout.npz")))


def test_training_changed_every_parameter(run):
    from rlpf.worldmodel.tokenizer import MotionTokenizer
    from rlpf.worldmodel.model import WorldModel

    root, cfg, _, _ = run
    trained = WorldModel.from_pretrained(str(root / "run"))
    torch.manual_seed(cfg.seed)
    fresh_tok = MotionTokenizer(cfg.world, cfg.tokenizer)
    fresh = WorldModel.create(fresh_tok, trained.prompts, cfg.frames, trained.fps, cfg.lm, seed=cfg.seed)
    for (name, a), b in zip(fresh.lm.named_parameters(), trained.lm.parameters()):
        assert not torch.equal(a, b), f"LM parameter {name} did not change"
    for (name, a), b in zip(fresh_tok.named_parameters(), trained.motion_tokenizer.parameters()):
        assert not torch.equal(a, b), f"tokenizer parameter {name} did not change"


def test_rerun_resumes_and_other_config_is_refused(run):
    root, cfg, overrides, summary = run
    again = pretrain(cfg, str(root / "run"), progress=False)  # every stage done: nothing retrains
    assert again["lm"] == summary["lm"] and again["tokenizer"] == summary["tokenizer"]
    with pytest.raises(ConfigError, match=r"different config.*lm_steps"):
        pretrain(load_config(PretrainConfig, None, overrides + ["lm_steps=13"]), str(root / "run"), progress=False)
    assert main(["pretrain", "--out", str(root / "run"), "--quiet"] + overrides + ["lm_steps=13"]) == 2


def test_generate_writes_clips_that_score(run, tmp_path, capsys):
    root = run[0]
    prompt = load_clips(str(root / "run" / "heldout.npz"))[0].prompt
    out = tmp_path / "gen"
    assert main(["generate", "--checkpoint", str(root / "run"), "--prompt", prompt, "--n", "3", "--out", str(out)]) == 0
    (path,) = out.iterdir()
    clips = load_clips(str(path))
    assert len(clips) == 3 and all(c.prompt == prompt and c.world == "ant" and c.n_frames == 16 for c in clips)
    assert main(["score", str(out), "--quiet", "--out", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["clips"]) == 3 and not report["errors"]
    # continuation from a given clip's first frames, and the same seed repeats
    assert main(["generate", "--checkpoint", str(root / "run"), "--prompt", prompt, "--n", "3",
                 "--first-frames", str(path), "--context", "4", "--out", str(tmp_path / "cont")]) == 0
    assert main(["generate", "--checkpoint", str(root / "run"), "--prompt", prompt, "--n", "3", "--out", str(tmp_path / "again")]) == 0
    assert np.array_equal(load_clips(str(next((tmp_path / "again").iterdir())))[1].qpos, clips[1].qpos)


def test_generate_errors(run, tmp_path, capsys):
    root = run[0]
    assert main(["generate", "--checkpoint", str(root / "run"), "--prompt", "moonwalk", "--out", str(tmp_path)]) == 2
    assert "unknown word" in capsys.readouterr().err
    assert main(["generate", "--checkpoint", str(tmp_path / "missing"), "--prompt", "x", "--out", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_evaluate_reports_quality_and_physics(run, tmp_path, capsys):
    root = run[0]
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(root / "run"), "--n", "3", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    for key in ("command_accuracy", "plausible_rate", "fid", "diversity", "r_precision_top1", "mm_dist",
                "physics", "per_prompt", "reference", "generation_clips_per_min"):
        assert key in report, key
    assert 0 <= report["command_accuracy"] <= 1 and report["fid"] >= 0
    assert "penetration_m" in report["physics"]
    assert "command accuracy" in capsys.readouterr().out


def test_data_of_another_world_is_refused(tmp_path, valid_clips):
    from rlpf.worldmodel.pretrain import load_or_make_data

    clip = valid_clips["pusher"][0]
    clip.prompt = "push"
    save_clips(str(tmp_path / "p.npz"), clip)
    cfg = load_config(PretrainConfig, None, TINY + [f"data={tmp_path}"])
    with pytest.raises(ConfigError, match="world 'pusher'.*trains 'ant'"):
        load_or_make_data(cfg, progress=False)


def test_fresh_and_cached_data_hold_out_the_same_clips(tmp_path):
    from rlpf.worldmodel.pretrain import load_or_make_data, split

    cfg = load_config(PretrainConfig, None, TINY + [f"data={tmp_path}"])
    first = split(load_or_make_data(cfg, progress=False), cfg.val_fraction, cfg.seed)[1]  # simulates
    again = split(load_or_make_data(cfg, progress=False), cfg.val_fraction, cfg.seed)[1]  # reads the cache
    assert [c.source for c in first] == [c.source for c in again]
    assert all(np.array_equal(a.qpos, b.qpos) for a, b in zip(first, again))


def test_a_payload_lm_checkpoint_never_runs(run, tmp_path):
    """A shared, unfinished pretraining run whose checkpoints/lm.pt carries a payload: resuming refuses it."""
    import shutil

    from payloads import torch_file

    from rlpf.worldmodel.tokenizer import CheckpointError

    root, cfg, _, _ = run
    copy = tmp_path / "run"
    shutil.copytree(root / "run", copy, ignore=shutil.ignore_patterns("*.lock", "lock"))
    for name in ("model", "evaluator"):
        shutil.rmtree(copy / name, ignore_errors=True)
    for name in ("lm_report.json", "pretrain_summary.json"):
        if (copy / name).exists():
            os.remove(copy / name)
    real = torch.load(copy / "checkpoints" / "lm.pt", weights_only=True)
    marker = tmp_path / "payload-ran"
    torch_file(copy / "checkpoints" / "lm.pt", marker, around=lambda p: {**real, "optimizer": p})
    with pytest.raises(CheckpointError, match=r"checkpoints/lm\.pt: refused"):
        pretrain(cfg, str(copy), progress=False)
    assert not marker.exists()
