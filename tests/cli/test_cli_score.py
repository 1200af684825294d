"""``rlpf score`` through ``rlpf.cli.main`` (in process), and config loading."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from rlpf.cli import main
from rlpf.core.clips import save_clips
from rlpf.core.config import ConfigError, load_config
from rlpf.policies.scripted import AntGait
from rlpf.rewards.registry import register, unregister
from rlpf.judge.scoring import ScoreConfig
from rlpf.data.simulate import simulate

N_FRAMES = 30
CONTRACT_KEYS = {"world", "clips", "errors", "summary"}
CLIP_KEYS = {"source", "prompt", "score", "plausible", "terms"}


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """Two valid simulated ant clips, a garbage .npz and a clip of the wrong width."""
    d = tmp_path_factory.mktemp("clips")
    for i in range(2):
        clip = simulate("ant", AntGait(), N_FRAMES, seed=i, prompt=f"ant walks {i}")
        save_clips(str(d / f"valid_{i}.npz"), clip)
    (d / "garbage.npz").write_bytes(b"definitely not a zip archive \x00\xff" * 10)
    np.savez(d / "wide.npz", qpos=np.zeros((N_FRAMES, 10)), fps=20.0, world=np.str_("ant"))
    (d / "notes.txt").write_text("not a clip; directories are searched for .npz only")
    return d


@pytest.fixture(scope="module")
def valid_paths(clip_dir):
    return [str(clip_dir / "valid_0.npz"), str(clip_dir / "valid_1.npz")]


def _report(path):
    with open(path) as f:
        return json.load(f)


def test_score_directory_with_bad_files(clip_dir, tmp_path, capsys):
    out = tmp_path / "sub" / "report.json"
    rc = main(["score", str(clip_dir), "--world", "ant", "--out", str(out)])
    assert rc == 1
    report = _report(out)
    assert set(report) == CONTRACT_KEYS
    assert report["world"] == "ant"

    clips = report["clips"]
    assert len(clips) == 2
    assert sorted(c["source"] for c in clips) == [str(clip_dir / "valid_0.npz"), str(clip_dir / "valid_1.npz")]
    weights = report["summary"]["weights"]
    for c in clips:
        assert CLIP_KEYS <= set(c)
        assert c["prompt"] == f"ant walks {c['source'][-5]}"
        assert isinstance(c["score"], float) and math.isfinite(c["score"])
        assert isinstance(c["plausible"], bool)
        assert c["terms"] and all(isinstance(v, float) and math.isfinite(v) for v in c["terms"].values())
        # the score is the weighted total of the reported terms
        assert c["score"] == pytest.approx(sum(weights[k] * v for k, v in c["terms"].items()), abs=1e-3)
        assert c["plausible"] == (not c["violations"])

    errors = report["errors"]
    assert len(errors) == 2
    by_source = {os.path.basename(e["source"]): e["error"] for e in errors}
    assert set(by_source) == {"garbage.npz", "wide.npz"}
    assert "unreadable" in by_source["garbage.npz"]
    assert "width 10" in by_source["wide.npz"] and "nq=15" in by_source["wide.npz"]

    s = report["summary"]
    assert s["n_clips"] == 2 and s["n_errors"] == 2
    assert s["plausible_rate"] == sum(c["plausible"] for c in clips) / 2
    assert s["mean_score"] == pytest.approx(np.mean([c["score"] for c in clips]))

    stdout = capsys.readouterr().out
    assert "ERROR" in stdout and "garbage.npz" in stdout and "wide.npz" in stdout
    assert f"report: {out}" in stdout


def test_all_valid_exits_zero(valid_paths, tmp_path, capsys):
    out = tmp_path / "ok.json"
    rc = main(["score", *valid_paths, "--out", str(out)])  # world comes from the files
    assert rc == 0
    report = _report(out)
    assert set(report) == CONTRACT_KEYS
    assert report["errors"] == []
    assert report["world"] == "ant"
    assert [c["source"] for c in report["clips"]] == valid_paths
    assert "2 clips scored" in capsys.readouterr().out


def test_quiet_prints_nothing(valid_paths, capsys):
    assert main(["score", valid_paths[0], "--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_batch_file_sources(valid_paths, tmp_path):
    from rlpf.core.clips import load_clips

    clips = [load_clips(p)[0] for p in valid_paths]
    batch = tmp_path / "batch.npz"
    save_clips(str(batch), clips)
    out = tmp_path / "r.json"
    assert main(["score", str(batch), "--quiet", "--out", str(out)]) == 0
    assert [c["source"] for c in _report(out)["clips"]] == [f"{batch}#0", f"{batch}#1"]


def test_examples(capsys):
    rc = main(["score", "--examples"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "plausible" in out
    assert "ant_valid.npz" in out and "humanoid_valid.npz" in out and "pusher_valid.npz" in out
    assert "ERROR" not in out


def test_unknown_world_is_an_error_entry(valid_paths, tmp_path, capsys):
    out = tmp_path / "nope.json"
    rc = main(["score", valid_paths[0], "--world", "nope", "--out", str(out)])
    assert rc == 1
    report = _report(out)
    assert set(report) == CONTRACT_KEYS
    assert report["clips"] == []
    assert len(report["errors"]) == 1
    err = report["errors"][0]
    assert err["source"] == valid_paths[0]
    assert "nope" in err["error"] and "ant" in err["error"]
    assert report["summary"]["n_clips"] == 0 and report["summary"]["n_errors"] == 1


def test_file_without_world_and_no_flag(tmp_path, valid_paths):
    path = tmp_path / "noworld.npz"
    np.savez(path, qpos=np.zeros((5, 15)), fps=20.0)
    out = tmp_path / "r.json"
    assert main(["score", str(path), "--quiet", "--out", str(out)]) == 1
    (err,) = _report(out)["errors"]
    assert err["source"] == str(path) and "no world" in err["error"]


def test_unknown_reward_override_exits_2(valid_paths, tmp_path, capsys):
    out = tmp_path / "never.json"
    rc = main(["score", valid_paths[0], "weights.nope=1", "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "no such reward" in err
    assert not out.exists()


def test_override_adds_a_plugin_to_the_default_physics_score(valid_paths, tmp_path):
    @register("t_cli_const")
    def const(clips, **kwargs):
        return [0.5] * len(clips)

    try:
        plain, out = tmp_path / "plain.json", tmp_path / "r.json"
        assert main(["score", *valid_paths, "--quiet", "--out", str(plain)]) == 0
        assert main(["score", *valid_paths, "weights.t_cli_const=-4", "--quiet", "--out", str(out)]) == 0
        before, report = _report(plain), _report(out)
        defaults = before["summary"]["weights"]
        assert report["summary"]["weights"] == {**defaults, "t_cli_const": -4.0}  # the physics terms stay
        for b, c in zip(before["clips"], report["clips"]):
            assert c["terms"] == {**b["terms"], "t_cli_const": 0.5}
            assert c["score"] == pytest.approx(b["score"] - 2.0, abs=1e-5)
            assert c["plausible"] == b["plausible"]  # no threshold: the plugin never decides
    finally:
        unregister("t_cli_const")


def test_override_after_an_option_changes_only_that_weight(valid_paths, tmp_path):
    plain, out = tmp_path / "plain.json", tmp_path / "r.json"
    assert main(["score", valid_paths[0], "--world", "ant", "--quiet", "--out", str(plain)]) == 0
    rc = main(["score", valid_paths[0], "--world", "ant", "weights.float_m=-1", "--quiet", "--out", str(out)])
    assert rc == 0
    defaults = _report(plain)["summary"]["weights"]
    assert defaults["float_m"] == pytest.approx(-1 / 0.03)
    assert _report(out)["summary"]["weights"] == {**defaults, "float_m": -1.0}


EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "rlpf", "examples")
FLOAT_CLIP = os.path.join(EXAMPLES, "ant_float.npz")
SKATE_CLIP = os.path.join(EXAMPLES, "ant_skate.npz")


def _score(tmp_path, name, *args):
    out = tmp_path / f"{name}.json"
    assert main(["score", *args, "--quiet", "--out", str(out)]) == 0
    report = _report(out)
    return report["clips"][0], report["summary"]


def test_readme_weight_example_keeps_the_floating_ant_implausible(tmp_path, monkeypatch):
    """The README's `rlpf score a.npz weights.skate_mps=-20 weights.mypkg.rewards:smooth=-1`, on the
    bundled floating ant: skating reweighted, a plugin added, and floating still scored and flagged."""
    pkg = tmp_path / "plugins" / "mypkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "rewards.py").write_text('def smooth(clips, **_):\n    """A constant stand-in."""\n'
                                    "    return [0.25] * len(clips)\n")
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    plain, summary0 = _score(tmp_path, "plain", FLOAT_CLIP)
    clip, summary = _score(tmp_path, "readme", FLOAT_CLIP, "weights.skate_mps=-20", "weights.mypkg.rewards:smooth=-1")
    assert not plain["plausible"] and "float_m" in plain["violations"]
    assert not clip["plausible"] and "float_m" in clip["violations"]
    assert summary["weights"]["float_m"] == summary0["weights"]["float_m"] == pytest.approx(-1 / 0.03)
    assert summary["weights"]["skate_mps"] == -20.0 and summary["weights"]["mypkg.rewards:smooth"] == -1.0
    assert clip["terms"]["float_m"] == plain["terms"]["float_m"] > 0.03
    # the score: the old one, skating reweighted (-1/0.25 -> -20), plus the plugin's -1 x 0.25
    skate = plain["terms"]["skate_mps"]
    expected = plain["score"] + (-20.0 + 1 / 0.25) * skate - 0.25
    assert clip["score"] == pytest.approx(expected, abs=1e-4)
    assert clip["score"] < -1.0  # the floating term is in it, not just the two overridden ones


def test_one_weight_override_does_not_make_the_floating_ant_plausible(tmp_path):
    plain, _ = _score(tmp_path, "plain", FLOAT_CLIP)
    clip, summary = _score(tmp_path, "skate", FLOAT_CLIP, "weights.skate_mps=-20")
    assert plain["score"] < -8 and not plain["plausible"]
    assert clip["score"] == pytest.approx(plain["score"] - 20 * plain["terms"]["skate_mps"]
                                          + plain["terms"]["skate_mps"] / 0.25, abs=1e-4)
    assert not clip["plausible"] and clip["violations"] == plain["violations"]
    assert set(plain["terms"]) <= set(summary["weights"])  # every physics term still weighted


def test_weight_zero_reports_a_term_without_scoring_it_and_it_still_judges(tmp_path):
    plain, _ = _score(tmp_path, "plain", FLOAT_CLIP)
    clip, summary = _score(tmp_path, "zero", FLOAT_CLIP, "weights.float_m=0")
    assert summary["weights"]["float_m"] == 0.0
    assert clip["terms"]["float_m"] == plain["terms"]["float_m"]  # reported
    assert clip["score"] == pytest.approx(plain["score"] + plain["terms"]["float_m"] / 0.03, abs=1e-4)  # not scored
    assert not clip["plausible"] and "float_m" in clip["violations"]  # but it still decides plausibility


def test_a_plugin_weight_does_not_make_a_skating_clip_plausible(tmp_path):
    plain, _ = _score(tmp_path, "plain", SKATE_CLIP)
    assert not plain["plausible"] and "skate_mps" in plain["violations"]
    for override in ("weights.rlpf_plugins:kill_switch=-1", "weights={rlpf_plugins:kill_switch: -1}"):
        clip, summary = _score(tmp_path, "plugin", SKATE_CLIP, override)
        assert not clip["plausible"] and clip["violations"] == plain["violations"]
        assert summary["weights"]["skate_mps"] == pytest.approx(-1 / 0.25)


def test_weight_and_threshold_errors_name_the_field(tmp_path, capsys):
    for override, words in [("weights.skate_mps=.nan", ["weights.skate_mps", "finite", "nan"]),
                            ("weights=abc", ["weights", "dict[str, float]", "'abc'"]),
                            ("thresholds.skate_mps=-1", ["thresholds.skate_mps", ">= 0", "-1"]),
                            ("thresholds.skate_mp=0.1", ["thresholds.skate_mp", "skate_mps", "float_m"]),
                            ("thresholds.rlpf_plugins:kill_switch=1", ["no plausibility threshold"])]:
        out = tmp_path / "never.json"
        assert main(["score", FLOAT_CLIP, override, "--out", str(out)]) == 2, override
        err = capsys.readouterr().err
        assert all(w in err for w in words), (override, err)
        assert not out.exists()


def test_no_paths_exits_2(capsys):
    assert main(["score"]) == 2
    assert "--examples" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "score" in capsys.readouterr().out


def test_help(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    assert "score" in out and "simulate" in out


def test_score_help(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["score", "--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    assert "weights" in out and "thresholds" in out and "--world" in out
    assert "reward name (registered" in out  # field docstrings become help text


# ---------------------------------------------------------------- config


def test_load_config_yaml_and_overrides(tmp_path):
    cfg_path = tmp_path / "score.yaml"
    cfg_path.write_text("world: ant\nweights:\n  float_m: -1.5\n  skate_mps: -2\n")
    cfg = load_config(ScoreConfig, str(cfg_path), ["world=humanoid", "weights.skate_mps=-3",
                                                   "thresholds.float_m=0.1"])
    assert isinstance(cfg, ScoreConfig)
    assert cfg.world == "humanoid"
    assert cfg.weights == {"float_m": -1.5, "skate_mps": -3}
    assert cfg.thresholds == {"float_m": 0.1}
    resolved = cfg.resolved_weights()  # the listed weights changed, every other physics term at its default
    assert resolved["float_m"] == -1.5 and resolved["skate_mps"] == -3.0
    assert resolved == {**ScoreConfig().resolved_weights(), "float_m": -1.5, "skate_mps": -3.0}

    plain = load_config(ScoreConfig, str(cfg_path))
    assert plain.world == "ant" and plain.weights == {"float_m": -1.5, "skate_mps": -2}
    default = load_config(ScoreConfig)
    assert default == ScoreConfig()
    assert default.resolved_weights()  # empty weights: every built-in physics term
    assert all(w < 0 for w in default.resolved_weights().values())


def test_config_unknown_field_in_yaml(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("world: ant\nwieghts: {float_m: 1}\n")
    with pytest.raises(ConfigError, match="wieghts"):
        load_config(ScoreConfig, str(p))


def test_config_unknown_field_in_override():
    with pytest.raises(ConfigError, match="colour"):
        load_config(ScoreConfig, None, ["colour=red"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(ScoreConfig, None, ["world"])


def test_config_bad_yaml(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("world: [ant\nweights: {\n")
    with pytest.raises(ConfigError, match="invalid YAML") as ei:
        load_config(ScoreConfig, str(p))
    assert str(p) in str(ei.value)


def test_config_not_a_mapping_or_missing(tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text("- ant\n- humanoid\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(ScoreConfig, str(p))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(ScoreConfig, str(tmp_path / "missing.yaml"))


def test_cli_config_file(valid_paths, tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("weights:\n  float_m: -1\n")
    out = tmp_path / "r.json"
    assert main(["score", valid_paths[0], "--config", str(good), "--quiet", "--out", str(out)]) == 0
    report = _report(out)
    assert report["summary"]["weights"] == {**ScoreConfig().resolved_weights(), "float_m": -1.0}
    assert "float_m" in report["clips"][0]["terms"] and "skate_mps" in report["clips"][0]["terms"]

    bad = tmp_path / "bad.yaml"
    bad.write_text("weights: [unclosed\n")
    assert main(["score", valid_paths[0], "--config", str(bad), "--quiet"]) == 2
    assert "invalid YAML" in capsys.readouterr().err


def test_simulate_then_score(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", "--world", "pusher", "--n", "2", "--frames", "40", "--corrupt", "move_object",
                 "--out", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["pusher_000.npz", "pusher_000_move_object.npz", "pusher_001.npz", "pusher_001_move_object.npz"]
    report_path = tmp_path / "r.json"
    assert main(["score", str(out), "--quiet", "--out", str(report_path)]) == 0
    report = _report(report_path)
    verdict = {c["source"].split("/")[-1]: c["plausible"] for c in report["clips"]}
    assert verdict == {"pusher_000.npz": True, "pusher_001.npz": True,
                       "pusher_000_move_object.npz": False, "pusher_001_move_object.npz": False}
    assert main(["simulate", "--world", "pusher", "--corrupt", "nope", "--out", str(out)]) == 2
    assert "unknown corruption" in capsys.readouterr().err
