"""`rlpf control` end to end on a tiny budget: rows, the skipped RLPF backbone, resume, the CLI."""
import json
import sys

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
