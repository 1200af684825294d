"""rlpf train's preflight: the parts of an experiment must agree on the world before any work, and a
start that fails leaves no config behind that would refuse the corrected command."""
import json
import os

import yaml

from rlpf.cli import main

HERE = os.path.dirname(os.path.dirname(__file__))  # tests/
ANT_PRETRAIN = os.path.join(HERE, "..", "experiments", "configs", "ant.yaml")
PUSHER_PRETRAIN = os.path.join(HERE, "..", "experiments", "configs", "pusher.yaml")


def _pusher_base_run(root):
    """A base run directory as `rlpf pretrain` leaves it for the pusher (its descriptions only)."""
    base = root / "pusher-base"
    (base / "model").mkdir(parents=True)
    (base / "model" / "world_model.json").write_text(json.dumps({"world": "pusher", "fps": 20.0}))
    (base / "config.yaml").write_text(yaml.safe_dump({"world": "pusher"}))
    return base


def test_a_base_model_of_another_world_is_refused_before_any_work(tmp_path, capsys):
    base = _pusher_base_run(tmp_path)
    run = tmp_path / "run"
    code = main(["train", "--out", str(run), "--quiet", f"base_run={base}", f"pretrain_config={ANT_PRETRAIN}",
                 "eval_trackers=[pd]"])
    err = capsys.readouterr().err
    assert code == 2
    assert "base_run" in err and "'pusher'" in err and "'ant'" in err
    assert not (run / "config.yaml").exists()  # a failed start leaves no config behind


def test_configs_of_another_world_are_refused(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--out", str(run), "--quiet", f"base_run={tmp_path / 'none'}",
                 f"pretrain_config={PUSHER_PRETRAIN}", "eval_trackers=[pd]"])
    assert code == 2 and "pretrain_config" in capsys.readouterr().err
    pusher_tracker = tmp_path / "tracker.yaml"
    pusher_tracker.write_text(yaml.safe_dump({"world": "pusher"}))
    code = main(["train", "--out", str(run), "--quiet", f"base_run={tmp_path / 'none'}",
                 f"pretrain_config={ANT_PRETRAIN}", f"tracker_config={pusher_tracker}"])
    assert code == 2 and "tracker_config" in capsys.readouterr().err
    assert not (run / "config.yaml").exists()
