"""`rlpf control` end to end on a tiny budget: rows, the skipped RLPF backbone, resume, the CLI."""
import json
import sys

import numpy as np
import pytest

from rlpf.cli import main
from rlpf.core.config import load_config
from rlpf.control.pipeline import ControlConfig, prepare_backbone, run_control
from test_control_head import tiny_world_model

TINY = ["envs=[Reacher-v5]", "demo_episodes=2", "head_steps=4", "bc_steps=4", "bc_batch=8", "eval_episodes=1",
        "video_episodes=0", "sb3_envs=1", "sb3_steps={Reacher-v5: 64}", "head.n_queries=1", "head.head_hidden=16"]


def test_control_run_table_skip_and_resume(tmp_path, monkeypatch, capsys):
    wm = tiny_world_model(tmp_path / "wm")
    monkeypatch.setitem(sys.modules, "rlpf.finetune.pipeline", None)   # the RLPF trainer is not installed
    backbones = (f"backbones={{base: {wm}, rlpf: {{path: {tmp_path / 'rlpf'}, train: rlpf}}}}")
    run = tmp_path / "run"
    assert main(["control", "--out", str(run), "--quiet", *TINY, backbones]) == 0
    report = json.loads((run / "report.json").read_text())
    rows = {(r["method"], r["env"]): r for r in report["table"]}
    assert set(rows) == {("expert", "Reacher-v5"), ("mlp-bc", "Reacher-v5"), ("ppo-scratch", "Reacher-v5"),
                         ("head-base", "Reacher-v5")}
    assert rows[("ppo-scratch", "Reacher-v5")]["env_steps"] == 64
    assert rows[("mlp-bc", "Reacher-v5")]["env_steps"] == rows[("head-base", "Reacher-v5")]["env_steps"] == 100
    assert rows[("expert", "Reacher-v5")]["success_rate"] == 1.0
    for r in report["table"]:
        assert {"method", "env", "success_rate", "return_mean", "env_steps"} <= set(r)
    assert report["skipped"][0]["method"] == "head-rlpf" and "RLPF trainer is not available" in report["skipped"][0]["reason"]
    out = capsys.readouterr()
    assert "head-rlpf" in out.out and "skipped" in out.out and "head-rlpf" in out.err
    assert (run / "config.yaml").exists() and (run / "policies" / "head-base" / "Reacher-v5" / "policy.pt").exists()
    # a second run reuses every row
    again = run_control(load_config(ControlConfig, str(run / "config.yaml")), str(run), progress=False)
    assert again["table"] == report["table"]


def test_backbone_without_trainer_is_skipped(tmp_path):
    path, reason = prepare_backbone("x", {"path": str(tmp_path / "none"), "train": "none", "config": "", "overrides": []})
    assert path is None and "holds no world model" in reason


def test_config_errors_name_the_field(tmp_path):
    assert main(["control", "--out", str(tmp_path / "r"), "envs=[Ant-v5]"]) == 2
    assert main(["control", "--out", str(tmp_path / "r"), "methods=[dance]"]) == 2
    with pytest.raises(ValueError, match="backbones.b.train"):
        load_config(ControlConfig, None, ["backbones={b: {path: x, train: magic}}"])


def test_control_run_records_a_video_failure_and_keeps_its_rows(tmp_path):
    """RUN/videos is a regular file, so no video can be written (for real, also as root): `rlpf control`
    finishes, exit 0, every row evaluated, each failure a line of the table and an entry of the report."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "videos").write_text("not a directory")
    args = [a for a in TINY if not a.startswith("video_episodes")] + ["video_episodes=1", "video_size=48",
                                                                      "methods=[expert, mlp-bc]"]
    assert main(["control", "--out", str(run), "--quiet", *args]) == 0
    report = json.loads((run / "report.json").read_text())
    assert [(r["method"], r["success_rate"] >= 0, r["videos"]) for r in report["table"]] == [
        ("expert", True, []), ("mlp-bc", True, [])]
    assert [(e["method"], e["env"]) for e in report["video_errors"]] == [("expert", "Reacher-v5"), ("mlp-bc", "Reacher-v5")]
    assert all("Error" in e["error"] and e["video"].startswith(str(run / "videos")) for e in report["video_errors"])


MT_CONFIG = "experiments/configs/control_metaworld.yaml"
MT_TINY = ["tasks=[reach-v3]", "demo_episodes=2", "eval_episodes=2", "eval_envs=2", "bc_steps=20", "bc_batch=16",
           "bc_hidden=16", "seeds=[0, 1]", "sb3_steps={reach-v3: 120}", "video_episodes=0"]


def test_metaworld_config_errors_name_the_field(tmp_path, capsys):
    def err(*overrides):
        assert main(["control", "--config", MT_CONFIG, "--out", str(tmp_path / "r"), *overrides]) == 2
        return capsys.readouterr().err

    assert "tasks.0" in err("tasks=[fly-v3]")
    assert "outside the demonstration seeds 0..49" in err("eval_seed=20")
    assert "sb3_steps" in err("tasks=[reach-v3]", "sb3_steps={push-v3: 10}")
    assert "demo_noise_range" in err("demo_noise_range=[0.3, 0.1]")
    assert "seeds" in err("seeds=[]")


def test_metaworld_head_rows_fail_naming_the_missing_backbone(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["control", "--config", MT_CONFIG, "--out", str(out), *MT_TINY, "methods=[expert, head]",
                 f"backbones={{base: {{path: {tmp_path / 'no-model'}, train: none}}}}"]) == 2
    msg = capsys.readouterr().err
    assert "head-base" in msg and str(tmp_path / "no-model") in msg and "world model" in msg
    assert not (out / "report.json").exists() and not (out / "demos").exists()   # failed before any work


@pytest.mark.slow
def test_metaworld_table_end_to_end_and_resume(tmp_path, capsys):
    run = tmp_path / "run"
    methods = "methods=[expert, mlp-bc, sb3-scratch]"   # the config's head row would pretrain its MT10 backbone
    assert main(["control", "--config", MT_CONFIG, "--out", str(run), "--quiet", *MT_TINY, methods]) == 0
    report = json.loads((run / "report.json").read_text())
    rows = {(r["method"], r["env"]): r for r in report["table"]}
    assert set(rows) == {(m, e) for m in ("expert", "mlp-bc", "sac-scratch") for e in ("reach-v3", "mean")}
    assert rows[("expert", "reach-v3")]["success_rate"] == 1.0
    bc = rows[("mlp-bc", "reach-v3")]
    assert bc["seeds"] == 2 and len(bc["per_seed"]) == 2 and bc["se_over"] == "seeds"
    assert bc["env_steps"] == int(np.load(run / "demos" / "mt10.npz")["ep_steps"].sum())
    assert rows[("sac-scratch", "mean")]["env_steps"] == 120 and rows[("sac-scratch", "reach-v3")]["se_over"] == "episodes"
    assert all(r["eval_steps_per_s"] > 0 for r in report["table"] if r["env"] == "mean")
    assert "expert" in capsys.readouterr().out
    for k in (0, 1):
        assert (run / "policies" / "mlp-bc" / f"seed{k}" / "policy.pt").exists()
    assert (run / "policies" / "sac-scratch" / "reach-v3" / "seed0" / "model.zip").exists()
    again = run_control(load_config(ControlConfig, str(run / "config.yaml")), str(run), progress=False)
    assert again["table"] == report["table"]


def test_metaworld_head_rows_refuse_a_backbone_without_a_task(tmp_path, capsys):
    from multiworld_models import tiny_multiworld

    tiny_multiworld(tmp_path / "wm", worlds=("metaworld/push-v3", "metaworld/drawer-open-v3"))
    out = tmp_path / "r"
    assert main(["control", "--config", MT_CONFIG, "--out", str(out), *MT_TINY, "tasks=[push-v3, door-open-v3]",
                 "sb3_steps={push-v3: 10, door-open-v3: 10}", "methods=[head]",
                 f"backbones={{base: {{path: {tmp_path / 'wm'}, train: none}}}}"]) == 2
    msg = capsys.readouterr().err
    assert "head-base" in msg and "door-open-v3" in msg and "no world for task" in msg
    one = tiny_world_model(tmp_path / "pusher")   # a one-world backbone
    assert main(["control", "--config", MT_CONFIG, "--out", str(out), *MT_TINY, "methods=[head]",
                 f"backbones={{base: {{path: {one}, train: none}}}}"]) == 2
    assert "one-world model" in capsys.readouterr().err
    assert not out.exists() or not (out / "demos").exists()


def test_metaworld_head_row_on_a_multi_world_backbone(tmp_path, capsys):
    from multiworld_models import tiny_multiworld

    tiny_multiworld(tmp_path / "wm", worlds=("metaworld/push-v3", "metaworld/drawer-open-v3"))
    run = tmp_path / "run"
    args = ["control", "--config", MT_CONFIG, "--out", str(run), "--quiet", *MT_TINY, "tasks=[drawer-open-v3, reach-v3]",
            "sb3_steps={drawer-open-v3: 10, reach-v3: 10}", "methods=[mlp-bc, head]", "seeds=[0]", "head_steps=6",
            "head.n_queries=1", "head.head_hidden=16", "head.history=8", "head.chunk=2", "head.execute=2",
            f"backbones={{base: {{path: {tmp_path / 'wm'}, train: none}}}}"]
    assert main(args) == 0
    report = json.loads((run / "report.json").read_text())
    rows = {(r["method"], r["env"]): r for r in report["table"]}
    assert set(rows) == {(m, e) for m in ("mlp-bc", "head-base") for e in ("drawer-open-v3", "reach-v3", "mean")}
    assert rows[("head-base", "mean")]["env_steps"] == rows[("mlp-bc", "mean")]["env_steps"] > 0
    assert rows[("head-base", "mean")]["eval_steps_per_s"] > 0 and "head-base" in report["eval_speed"]
    assert "ONE multi-task control head" in rows[("head-base", "reach-v3")]["notes"]
    assert (run / "policies" / "head-base" / "seed0" / "policy.pt").exists()
    assert "head-base" in capsys.readouterr().out
    assert main(args) == 0   # cached: the same table again
    assert json.loads((run / "report.json").read_text())["table"] == report["table"]
