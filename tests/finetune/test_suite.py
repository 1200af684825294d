"""rlpf train over a suite of tasks: a tiny Meta-World run end to end, per-task report, one broken task."""
import json

import pytest
import yaml

from rlpf.cli import main
from rlpf.core.config import ConfigError, load_config
from rlpf.finetune.suite import SuiteConfig, format_suite, run_configs, suite_report

from test_pretrain import TINY
from test_rlpf_train import GRPO_TINY

DRAWER = "metaworld/drawer-open-v3"


def test_suite_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="runs"):
        load_config(SuiteConfig, None, [])
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"runs": {"../up": "x.yaml"}}))
    with pytest.raises(ConfigError, match="directory names"):
        load_config(SuiteConfig, str(bad))
    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump({"runs": {"a": str(tmp_path / "nope.yaml")}}))
    with pytest.raises(ConfigError, match="nope.yaml not found"):
        run_configs(load_config(SuiteConfig, str(missing)))
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump({"method": "rlpf", "grpo": {"stepz": 3}}))
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"runs": {"a": str(typo)}}))
    with pytest.raises(ConfigError, match="suite run 'a'.*stepz"):   # found before anything trains
        run_configs(load_config(SuiteConfig, str(suite)))


def test_a_run_may_carry_its_own_overrides(tmp_path):
    base = tmp_path / "run.yaml"
    base.write_text(yaml.safe_dump({"method": "rlpf", "grpo": {"steps": 3}}))
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"runs": {"rlpf": str(base), "sft": f"{base} method=sft_filter",
                                              "no-alignment": f"{base} 'weights={{tracking_success: 10.0}}'"},
                                     "overrides": ["grpo.steps=5"]}))
    cfgs = run_configs(load_config(SuiteConfig, str(suite)), ["eval_per_prompt=4"])
    assert cfgs["rlpf"].method == "rlpf" and cfgs["sft"].method == "sft_filter"
    assert cfgs["no-alignment"].weights == {"tracking_success": 10.0}
    assert {c.grpo.steps for c in cfgs.values()} == {5} and {c.eval_per_prompt for c in cfgs.values()} == {4}


def test_suite_report_table_and_mean():
    def rep(world, b, a):
        side = lambda v: {"tracking_success": v, "plausible_rate": v / 2, "task_success": v, "fid": 0.1,
                          "physics": {"object_teleport_m": 1 - v, "skate_mps": 0.0}}
        return {"world": world, "method": "rlpf", "before": side(b), "after": side(a), "change": {}}

    report = suite_report({"push": rep("metaworld/push-v3", 0.2, 0.6), "drawer": rep(DRAWER, 0.4, 1.0)},
                          {"door": "ConfigError: x"})
    assert [r["task"] for r in report["table"]] == ["push", "drawer"]
    assert report["table"][0]["tracking_success"] == [0.2, 0.6]
    assert report["table"][1]["physics.object_teleport_m"] == [0.6, 0.0]
    assert "physics.skate_mps" not in report["table"][0]          # only object / articulation terms
    assert report["mean"]["tracking_success"] == [0.3, 0.8]
    md = format_suite(report)
    assert "| push | `metaworld/push-v3` | 0.200 -> 0.600" in md and "**door failed**" in md


@pytest.mark.slow   # a tiny Meta-World pretraining and RLPF run, end to end through the CLI
def test_metaworld_suite_end_to_end(tmp_path):
    overrides = TINY + [f"world={DRAWER}", f"data={tmp_path / 'data'}", "frames=64", "tokenizer_window=16",
                        "data_n=30", "artifact_kinds=[move_articulation, teleport_object]"]
    pre = tmp_path / "pretrain.yaml"
    pre.write_text(yaml.safe_dump({o.split("=", 1)[0]: yaml.safe_load(o.split("=", 1)[1]) for o in overrides}))
    run = {"method": "rlpf", "world": DRAWER, "pretrain_config": str(pre), "base_run": str(tmp_path / "base"),
           "tracker": "pd", "eval_trackers": ["pd"], "workers": 0}
    (tmp_path / "drawer.yaml").write_text(yaml.safe_dump(run))
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump({**run, "base_run": str(tmp_path / "base2"),
                                                          "pretrain_config": str(tmp_path / "absent.yaml")}))
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"runs": {"drawer": str(tmp_path / "drawer.yaml"),
                                              "broken": str(tmp_path / "broken.yaml")},
                                     "overrides": [o for o in GRPO_TINY if not o.startswith("weights")]}))
    out = tmp_path / "suite"
    assert main(["train", "--config", str(suite), "--out", str(out), "--quiet"]) == 1   # one task failed
    report = json.loads((out / "report.json").read_text())
    assert list(report["failed"]) == ["broken"] and "absent.yaml" in report["failed"]["broken"]
    row, = report["table"]
    assert row["task"] == "drawer" and row["world"] == DRAWER
    for key in ("tracking_success", "plausible_rate", "command_accuracy", "task_success"):
        assert all(0.0 <= v <= 1.0 for v in row[key]), key
    assert any(k.startswith("physics.articulation_") for k in row)
    assert (out / "drawer" / "report.md").is_file() and list((out / "drawer" / "videos").glob("*.mp4"))
    assert "| drawer |" in (out / "report.md").read_text()


def test_suite_table_carries_every_object_term_and_not_the_body_terms():
    """The per-task table keeps each object term (robot-object penetration included: push's RLPF config
    weights it) and leaves out the terms of bodies on a floor, which manipulation worlds do not have."""
    physics = {"robot_object_penetration_m": 0.004, "object_unexplained_mps": 0.5, "articulation_unexplained_mps": 0.2,
               "joint_limit_rad": 0.0, "torque_excess": 0.01}
    r = {"world": "metaworld/push-v3", "method": "rlpf",
         "before": {"tracking_success": 0.5, "physics": physics},
         "after": {"tracking_success": 0.9, "physics": {k: v / 2 for k, v in physics.items()}}, "change": {}}
    report = suite_report({"push": r}, {})
    row, = report["table"]
    assert row["physics.robot_object_penetration_m"] == [0.004, 0.002]
    assert {k for k in row if k.startswith("physics.")} == {
        "physics.robot_object_penetration_m", "physics.object_unexplained_mps", "physics.articulation_unexplained_mps"}
    assert report["mean"]["tracking_success"] == [0.5, 0.9]
    assert "robot_object_penetration_m" in format_suite(report)
