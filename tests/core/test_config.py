"""Typed configs (rlpf.core.config on draccus): YAML + key=value decoded into the declared types, errors that
name the field, the type and the value, docstrings as --help, and run directories written by older rlpf."""
from __future__ import annotations

import dataclasses
import glob
import os
import typing

import pytest
import yaml

from rlpf.cli import main
from rlpf.core.config import ConfigError, config_dict, describe, field_doc, load_config, save_config
from rlpf.control.pipeline import Backbone, ControlConfig
from rlpf.core.errors import RLPFError
from rlpf.finetune.pipeline import INTRODUCED_FIELDS, RLPFConfig
from rlpf.policies.learned_tracker import TrackerTrainConfig
from rlpf.worldmodel.pretrain import PretrainConfig
from rlpf.core.run_dir import claim_run_dir, config_changes
from rlpf.judge.scoring import ScoreConfig

HERE = os.path.dirname(os.path.dirname(__file__))  # tests/
CONFIGS = os.path.join(HERE, "..", "experiments", "configs")
ALL = [ScoreConfig, PretrainConfig, RLPFConfig, TrackerTrainConfig, ControlConfig]


def _error(cls, overrides, path=None) -> str:
    with pytest.raises(ConfigError) as ei:
        load_config(cls, path, overrides)
    return str(ei.value)


def test_config_error_is_an_rlpf_error():
    assert issubclass(ConfigError, RLPFError)


# ------------------------------------------------------------------ values parsed into the declared types


def test_overrides_at_any_depth_become_the_declared_types():
    cfg = load_config(RLPFConfig, None, ["grpo.temperature=7e-1", "grpo.steps=12", "grpo.overlap_scoring=false",
                                         "sft.batch=8", "eval_per_prompt=3"])
    assert cfg.grpo.temperature == 0.7 and type(cfg.grpo.temperature) is float  # YAML 1.1 reads 7e-1 as a string
    assert cfg.grpo.steps == 12 and cfg.grpo.overlap_scoring is False and cfg.sft.batch == 8
    pre = load_config(PretrainConfig, None, ["lm.layers=2", "tokenizer.levels=[8, 5]", "lm_lr=1", "evaluator.steps=5"])
    assert pre.lm.layers == 2 and pre.tokenizer.levels == (8, 5) and pre.evaluator.steps == 5
    assert pre.lm_lr == 1.0 and type(pre.lm_lr) is float  # an int where a float is declared is that float
    tr = load_config(TrackerTrainConfig, None, ["reward.pose_weight=0.3", "net_arch=[64]", "total_timesteps=300_000"])
    assert tr.reward.pose_weight == 0.3 and tr.net_arch == [64] and tr.total_timesteps == 300000
    ctl = load_config(ControlConfig, None, ["head.head=flow", "backbones.base.path=runs/p2", "backbones.x=runs/x",
                                            "sb3_steps.Pusher-v5=1000"])
    assert ctl.head.head == "flow" and ctl.sb3_steps["Pusher-v5"] == 1000 and ctl.sb3_steps["Reacher-v5"] == 100_000
    assert ctl.backbones["base"] == Backbone("runs/p2", "pretrain", "experiments/configs/pusher.yaml", ["threads=1"])
    assert ctl.backbones["x"] == Backbone("runs/x")  # a backbone given as its path


def test_yaml_file_values_are_typed_and_overrides_win(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("grpo:\n  temperature: 7e-1\n  steps: 3\nweights: {tracking_success: 10}\n")
    cfg = load_config(RLPFConfig, str(p), ["grpo.steps=5"])
    assert cfg.grpo.temperature == 0.7 and cfg.grpo.steps == 5 and cfg.grpo.beta == 0.05  # the rest: defaults
    assert cfg.weights == {"tracking_success": 10.0} and type(cfg.weights["tracking_success"]) is float


def test_dict_keys_keep_their_dots_and_colons():
    cfg = load_config(ScoreConfig, None, ["weights.mypkg.rewards:smooth=-1", "weights.skate_mps=-20"])
    assert cfg.weights == {"mypkg.rewards:smooth": -1.0, "skate_mps": -20.0}
    # training weights: one entry on top of the default reward, or the whole dict replaced
    rl = load_config(RLPFConfig, None, ["weights.a.b:c=-1"])
    assert rl.weights == {"tracking_success": 10.0, "alignment": 2.0, "a.b:c": -1.0}
    assert load_config(RLPFConfig, None, ["weights={tracking_success: 1}"]).weights == {"tracking_success": 1.0}


@pytest.mark.parametrize("cls, override, words", [
    (PretrainConfig, "lm_steps=2.5", ["lm_steps", "expected int", "2.5"]),
    (PretrainConfig, "lm.layers=true", ["lm.layers", "expected int", "True"]),
    (PretrainConfig, "tokenizer.levels=abc", ["tokenizer.levels", "tuple[int, ...]", "'abc'"]),
    (ScoreConfig, "weights=abc", ["weights", "expected dict[str, float]", "'abc'"]),
    (RLPFConfig, "weights=abc", ["weights", "dict[str, float]", "'abc'"]),
    (RLPFConfig, "grpo.temperature=warm", ["grpo.temperature", "expected float", "'warm'"]),
    (RLPFConfig, "grpo.overlap_scoring=1", ["grpo.overlap_scoring", "bool", "1"]),
    (RLPFConfig, "world=null", ["world", "expected str", "None"]),
    (RLPFConfig, "eval_trackers=pd", ["eval_trackers", "list[str]", "'pd'"]),
    (TrackerTrainConfig, "net_arch=[64, x]", ["net_arch.1", "expected int", "'x'"]),
    (ControlConfig, "sb3_steps.Pusher-v5=1.5", ["sb3_steps.Pusher-v5", "expected int", "1.5"]),
    (ScoreConfig, "tracker_workers=two", ["tracker_workers", "int | None", "'two'"]),
])
def test_a_mistyped_value_names_the_field_the_type_and_the_value(cls, override, words):
    msg = _error(cls, [override])
    assert all(w in msg for w in words), msg
    assert override in msg  # and where it came from


def test_a_mistyped_value_in_a_file_names_the_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lm:\n  layers: 2.5\n")
    msg = _error(PretrainConfig, [], str(p))
    assert "lm.layers" in msg and "expected int" in msg and "2.5" in msg and str(p) in msg


@pytest.mark.parametrize("cls, override, field, listed", [
    (ScoreConfig, "colour=red", "colour", ["world", "weights", "thresholds", "trackers"]),
    (RLPFConfig, "grpoo.steps=1", "grpoo", ["grpo", "sft", "weights"]),
    (RLPFConfig, "grpo.stepz=1", "grpo.stepz", ["steps", "temperature", "overlap_scoring"]),
    (PretrainConfig, "lm.nope.deeper=1", "lm.nope", ["hidden", "layers", "heads", "intermediate"]),
    (ControlConfig, "backbones.base.pth=x", "backbones.base.pth", ["path", "train", "config", "overrides"]),
])
def test_an_unknown_field_or_section_lists_the_valid_ones(cls, override, field, listed):
    msg = _error(cls, [override])
    assert field in msg and "unknown field" in msg and all(name in msg for name in listed), msg


def test_unknown_keys_in_a_file_at_any_depth(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("world: ant\nlm:\n  layrs: 2\n")
    msg = _error(PretrainConfig, [], str(p))
    assert "lm.layrs" in msg and "layers" in msg and str(p) in msg
    p.write_text("wrld: ant\n")
    assert "wrld" in _error(PretrainConfig, [], str(p))


def test_a_plain_field_is_not_a_section():
    msg = _error(PretrainConfig, ["lm_steps.x=1"])
    assert "lm_steps" in msg and "int" in msg and "not a section" in msg


def test_malformed_overrides():
    assert "key=value" in _error(ScoreConfig, ["world"])
    assert "key=value" in _error(ScoreConfig, ["=ant"])
    assert "YAML" in _error(ScoreConfig, ["weights={a: [1"])


# ------------------------------------------------------------------ ranges and NaN


@pytest.mark.parametrize("cls, override, words", [
    (ScoreConfig, "weights.skate_mps=.nan", ["weights.skate_mps", "finite", "nan"]),
    (ScoreConfig, "weights.skate_mps=.inf", ["weights.skate_mps", "finite", "inf"]),
    (RLPFConfig, "weights.tracking_success=-.inf", ["weights.tracking_success", "finite"]),
    (ScoreConfig, "thresholds.skate_mps=-0.1", ["thresholds.skate_mps", ">= 0", "-0.1"]),
    (PretrainConfig, "lm_lr=nan", ["lm_lr", "finite", "nan"]),
    (PretrainConfig, "lm_steps=0", ["lm_steps", ">= 1", "0"]),
    (PretrainConfig, "lm.layers=0", ["lm.layers", ">= 1", "0"]),
    (PretrainConfig, "tokenizer.downsample=3", ["tokenizer.downsample", "power of 2", "3"]),
    (PretrainConfig, "evaluator.min_crop=2", ["evaluator.min_crop", "(0, 1]", "2.0"]),
    (PretrainConfig, "artifacts=1.5", ["artifacts", "[0, 1]", "1.5"]),
    (RLPFConfig, "grpo.num_generations=1", ["grpo.num_generations", ">= 2", "1"]),
    (RLPFConfig, "grpo.temperature=0", ["grpo.temperature", "> 0", "0"]),
    (RLPFConfig, "sft.learning_rate=-1", ["sft.learning_rate", "> 0"]),
    (RLPFConfig, "method=dpo", ["method", "rlpf, sft_filter, base", "'dpo'"]),
    (TrackerTrainConfig, "reward.pose_scale=-1", ["reward.pose_scale", ">= 0", "-1.0"]),
    (TrackerTrainConfig, "gamma=1.5", ["gamma", "(0, 1]", "1.5"]),
    (ControlConfig, "head.chunk=0", ["head.chunk", ">= 1", "0"]),
    (ControlConfig, "backbones.base.train=magic", ["backbones.base.train", "pretrain, rlpf or none", "'magic'"]),
    (ControlConfig, "envs=[Ant-v5]", ["envs.0", "Ant-v5", "Pusher-v5"]),
])
def test_out_of_range_values_are_refused_by_validation(cls, override, words):
    msg = _error(cls, [override])
    assert all(w in msg for w in words), msg


def test_a_threshold_must_name_a_term_that_has_one():
    msg = _error(ScoreConfig, ["thresholds.skate_mp=0.1"])
    assert "thresholds.skate_mp" in msg and "skate_mps" in msg and "float_m" in msg  # the terms that exist
    msg = _error(ScoreConfig, ["thresholds.rlpf_plugins:kill_switch=1"])  # a plugin without a threshold
    assert "no plausibility threshold" in msg and "skate_mps" in msg
    assert load_config(ScoreConfig, None, ["thresholds.skate_mps=0"]).thresholds == {"skate_mps": 0.0}


def test_configs_built_in_python_are_validated_too():
    with pytest.raises(ConfigError, match=r"weights\.x: must be a finite number, got nan"):
        ScoreConfig(weights={"x": float("nan")})
    with pytest.raises(ConfigError, match="thresholds.skate_mps"):
        ScoreConfig(thresholds={"skate_mps": -1.0})
    with pytest.raises(ValueError, match="method"):  # still a ValueError for callers that catch those
        RLPFConfig(method="dpo")


# ------------------------------------------------------------------ every shipped config


KINDS = {"ant": PretrainConfig, "pusher": PretrainConfig, "tracker_ant": TrackerTrainConfig,
         "control_pusher": ControlConfig, "score_strict_skating": ScoreConfig}


def _kind(name: str, path: str):
    from rlpf.core.config import read_yaml
    from rlpf.finetune.suite import SuiteConfig, is_suite

    if is_suite(read_yaml(path)):
        return SuiteConfig
    if name.startswith("metaworld_"):
        return PretrainConfig
    if name.startswith("control_"):
        return ControlConfig
    return KINDS.get(name, RLPFConfig)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(CONFIGS, "*.yaml"))), ids=os.path.basename)
def test_every_experiment_config_loads_and_round_trips(path, tmp_path, monkeypatch):
    from rlpf.finetune.suite import SuiteConfig, run_configs

    monkeypatch.chdir(os.path.join(HERE, ".."))   # a suite names its runs from the repository root
    name = os.path.basename(path)[:-5]
    cls = _kind(name, path)
    cfg = load_config(cls, path)
    if cls is SuiteConfig:   # and every run it names loads (paths are relative to the repository root)
        assert run_configs(cfg)
    save_config(cfg, str(tmp_path / "config.yaml"))
    assert load_config(cls, str(tmp_path / "config.yaml")) == cfg


# ------------------------------------------------------------------ run directories of older rlpf


def _old_style(cfg, path, drop=()):
    """config.yaml as rlpf wrote it before typed configs: dataclasses.asdict + yaml.safe_dump."""
    d = dataclasses.asdict(cfg)
    for dotted in drop:
        *sections, name = dotted.split(".")
        node = d
        for s in sections:
            node = node[s]
        del node[name]
    path.write_text(yaml.safe_dump(d, sort_keys=False))


def test_an_old_run_directory_resumes(tmp_path):
    cfg = load_config(RLPFConfig, None, ["grpo.overlap_scoring=false", "weights={tracking_success: 10}"])
    old = dataclasses.replace(cfg, weights={"tracking_success": 10})  # an int weight, as old configs held
    _old_style(old, tmp_path / "config.yaml", drop=list(INTRODUCED_FIELDS))
    assert config_changes(cfg, str(tmp_path), INTRODUCED_FIELDS) == {}
    assert claim_run_dir(cfg, str(tmp_path), introduced=INTRODUCED_FIELDS) == {}
    assert load_config(RLPFConfig, str(tmp_path / "config.yaml")) == cfg  # and what it writes now reads back


def test_old_pretrain_and_control_configs_load(tmp_path):
    pre = load_config(PretrainConfig, None, ["tokenizer.levels=[8, 5, 5]"])
    _old_style(pre, tmp_path / "pre.yaml")  # a tuple, as asdict gave it
    assert load_config(PretrainConfig, str(tmp_path / "pre.yaml")) == pre
    (tmp_path / "pre").mkdir()
    _old_style(pre, tmp_path / "pre" / "config.yaml")
    assert config_changes(pre, str(tmp_path / "pre")) == {}
    # control: backbones were dicts {path, train, config, overrides}
    (tmp_path / "ctl.yaml").write_text(yaml.safe_dump({"backbones": {"base": {
        "path": "runs/pusher", "train": "pretrain", "config": "experiments/configs/pusher.yaml", "overrides": []}},
        "envs": ["Pusher-v5"]}))
    ctl = load_config(ControlConfig, str(tmp_path / "ctl.yaml"))
    assert ctl.backbones["base"].train == "pretrain" and ctl.envs == ["Pusher-v5"]


def test_a_changed_or_unreadable_old_config_is_refused(tmp_path):
    cfg = PretrainConfig()
    _old_style(cfg, tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match=r"\['lm_steps'\] differ"):
        claim_run_dir(dataclasses.replace(cfg, lm_steps=7), str(tmp_path))
    d = yaml.safe_load((tmp_path / "config.yaml").read_text())
    d["removed_field"] = 1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError, match="removed_field") as ei:
        claim_run_dir(cfg, str(tmp_path))
    assert str(tmp_path) in str(ei.value)
    # a field the old run lacks, not declared as introduced: it differs (not read as today's default)
    _old_style(cfg, tmp_path / "config.yaml", drop=["lm.heads"])
    assert set(config_changes(cfg, str(tmp_path))) == {"lm"}


def test_saved_config_is_plain_yaml(tmp_path):
    cfg = load_config(ControlConfig, None, ["backbones.x=runs/x"])
    save_config(cfg, str(tmp_path / "config.yaml"))
    text = (tmp_path / "config.yaml").read_text()
    assert "!!python" not in text and yaml.safe_load(text) == config_dict(cfg)
    assert yaml.safe_load(text)["backbones"]["x"] == {"path": "runs/x", "train": "none", "config": "", "overrides": []}


# ------------------------------------------------------------------ docstrings are the --help


def _paths(cls, prefix=""):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            yield from _paths(kind, f"{prefix}{f.name}.")
        else:
            yield cls, f.name, f"{prefix}{f.name}"


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_describe_lists_every_field_with_type_default_and_doc(cls):
    text = describe(cls)
    for owner, name, dotted in _paths(cls):
        doc = field_doc(owner, name)
        assert doc, f"{owner.__name__}.{name} has no docstring"
        assert f"  {dotted} (" in text and ", default " in text
        assert doc.split()[0] in text


def test_describe_shows_a_sections_defaults_as_its_parent_builds_them():
    # PixelConfig.grpo is GRPOSettings with the pixel run's own defaults (24 steps, not the class's 400)
    from rlpf.finetune.grpo import GRPOSettings
    from rlpf.videowm.pipeline import PixelConfig

    text = describe(PixelConfig)
    assert PixelConfig().grpo.steps != GRPOSettings().steps
    assert f"grpo.steps (int, default {PixelConfig().grpo.steps})" in text
    assert f"grpo.beta (float, default {PixelConfig().grpo.beta})" in text


@pytest.mark.parametrize("command, expected", [
    ("score", ["weights (dict[str, float], default {})", "Weight 0 reports a term without scoring it"]),
    ("pretrain", ["lm.layers (int, default 4)", "Number of decoder layers.", "tokenizer.levels (tuple[int, ...]"]),
    ("train", ["grpo.temperature (float, default 1.0)", "Sampling temperature of the policy."]),
    ("train-tracker", ["reward.pose_weight (float, default 0.5)", "Weight of the joint-pose term."]),
    ("control", ["backbones (dict[str, Backbone]", "head.head (str, default 'mlp')"]),
])
def test_cli_help_shows_the_field_docs(command, expected, capsys):
    with pytest.raises(SystemExit) as ei:
        main([command, "--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    assert all(e in out for e in expected), out[-3000:]


# ------------------------------------------------------------------ every command goes through the loader


@pytest.mark.parametrize("command, override, words", [
    ("pretrain", "lm_steps=2.5", ["lm_steps", "expected int", "2.5"]),
    ("train", "grpo.temperature=warm", ["grpo.temperature", "expected float"]),
    ("train-tracker", "reward.pose_weight=.nan", ["reward.pose_weight", "finite"]),
    ("control", "head.history=true", ["head.history", "expected int", "True"]),
    ("score", "weights=abc", ["weights", "dict[str, float]"]),
])
def test_every_command_refuses_a_mistyped_override_with_exit_2(command, override, words, tmp_path, capsys):
    args = [command, str(tmp_path / "clip.npz")] if command == "score" else [command, "--out", str(tmp_path / "run")]
    if command == "score":
        from rlpf.core.clips import save_clips
        from rlpf.policies.scripted import AntGait
        from rlpf.data.simulate import simulate

        save_clips(args[1], simulate("ant", AntGait(), 10, seed=0))
    assert main([*args, override, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert not os.path.exists(tmp_path / "run")  # refused before anything was written


def test_a_file_may_use_dotted_keys_like_the_command_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lm.layers: 2\ntokenizer.levels: [8, 5]\nlm:\n  heads: 2\nlm_steps: 7\n")
    cfg = load_config(PretrainConfig, str(p))
    assert (cfg.lm.layers, cfg.lm.heads, cfg.tokenizer.levels, cfg.lm_steps) == (2, 2, (8, 5), 7)
    p.write_text("lm.layrs: 2\n")
    msg = _error(PretrainConfig, [], str(p))
    assert "lm.layrs" in msg and str(p) in msg and "layers" in msg


def test_a_str_field_takes_the_command_line_text_as_it_is(tmp_path):
    cfg = load_config(PretrainConfig, None, ["data=2024-01-01", "world=5"])
    assert cfg.data == "2024-01-01" and cfg.world == "5"  # not YAML's date and int
    assert load_config(ScoreConfig, None, ["world=null"]).world is None  # an optional one still takes null
    p = tmp_path / "c.yaml"
    p.write_text("world: 5\n")  # in a file, YAML's types hold: quote a string that looks like a number
    assert "expected str, got 5" in _error(RLPFConfig, [], str(p))
